"""The char tokenizer's hot paths: a regex over plain Chinese/ASCII text, and BERT basic tokenization +
WordPiece in Rust (Hugging Face ``tokenizers``) for the rest of the text they agree on.

Plain text (:data:`PLAIN_TEXT`: CJK ideographs, ASCII, Unicode punctuation of the CJK and general
punctuation blocks) needs none of BERT's Unicode work: lower-casing is ASCII's, no char has an accent
to strip, every ideograph and punctuation mark is a token of its own and ASCII letter/digit runs go
through the tokenizer's own cached WordPiece. One ``re.finditer`` then gives tokens and spans, about
3x faster than ``tokenizers`` (whose per-text cost from Python is most of its time on short text).

``BertNormalizer`` (clean text, a space around each CJK char, lower-case + strip accents) +
``BertPreTokenizer`` + ``WordPiece`` is the algorithm of ``ernie_tiny.tokenization.char``, and its
offsets are chars of the original text, as our spans are. The two agree token for token and span
for span on every text we have (the parity tests hold them to it), with known exceptions that
:data:`HOT_PATH_TEXT` keeps away from Rust: Greek capital sigma (Python lower-cases a final sigma
in context, ``tokenizers`` char by char), CJK extension blocks (``tokenizers``' table has a typo at
U+2B820) and every char whose Unicode data could differ between the two libraries' Unicode
versions. Texts outside it take the Python tokenizer, which stays the reference.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from operator import itemgetter

from ernie_tiny.tokenization.encoding import UNK, Columns

# ASCII, Latin-1, general punctuation, CJK symbols and punctuation, CJK unified ideographs (BMP),
# half- and full-width forms: long-assigned chars on which both implementations were checked.
HOT_PATH_TEXT = re.compile("[\t\n\r\x20-\x7e\xa0-\xff\u2000-\u206f\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]*")

_START, _END = itemgetter(0), itemgetter(1)
# Unicode punctuation (P*: BERT splits each off) of the blocks plain text may hold besides ASCII
_PLAIN_PUNCTUATION = "".join(chr(c) for block in ((0x2000, 0x206F), (0x3000, 0x303F), (0xFF00, 0xFFEF))
                             for c in range(block[0], block[1] + 1) if unicodedata.category(chr(c)).startswith("P"))
PLAIN_TEXT = re.compile("[\t\n\r\x20-\x7e\u4e00-\u9fff" + re.escape(_PLAIN_PUNCTUATION) + "]*")
# in plain text: an ideograph, a run of ASCII letters/digits, or any other non-space char (punctuation)
_PLAIN_TOKEN = re.compile("[\u4e00-\u9fff]|[a-zA-Z0-9]+|[^\\s a-zA-Z0-9\u4e00-\u9fff]")


class PlainCharTokens:
    """Token columns of plain text (:data:`PLAIN_TEXT`) by one regex and the tokenizer's WordPiece."""

    def __init__(self, vocab: dict[str, int], do_lower_case: bool,
                 wordpiece: Callable[[str], tuple[tuple[str, int, int], ...]]):
        self._vocab_get, self._unk = vocab.get, vocab[UNK]
        self._lower = do_lower_case
        self._wordpiece = wordpiece

    def columns(self, text: str) -> Columns:
        vocab_get, unk, wordpiece = self._vocab_get, self._unk, self._wordpiece
        ids: list[int] = []
        starts: list[int] = []
        ends: list[int] = []
        for match in _PLAIN_TOKEN.finditer(text.lower() if self._lower else text):  # ASCII lower: same length
            piece = match.group()
            start = match.start()
            if len(piece) == 1:  # WordPiece of one char: itself, or [UNK]
                ids.append(vocab_get(piece, unk))
                starts.append(start)
                ends.append(start + 1)
            else:
                for token, piece_start, piece_end in wordpiece(piece):
                    ids.append(vocab_get(token, unk))
                    starts.append(start + piece_start)
                    ends.append(start + piece_end)
        return ids, starts, ends


class RustCharTokens:
    """Token columns ``(ids, starts, ends)`` of texts, from a ``tokenizers`` WordPiece pipeline."""

    def __init__(self, vocab: dict[str, int], do_lower_case: bool):
        from tokenizers import Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import WordPiece

        from ernie_tiny.tokenization.char import MAX_CHARS_PER_WORD  # char imports this module

        tokenizer = Tokenizer(WordPiece(dict(vocab), unk_token=UNK, max_input_chars_per_word=MAX_CHARS_PER_WORD))
        # strip_accents=None: accents are stripped exactly when lower-casing, as BERT does
        tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                          strip_accents=None, lowercase=do_lower_case)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        self._tokenizer = tokenizer

    def columns(self, texts: list[str]) -> list[Columns | None]:
        """Columns of each text, or None for a text outside :data:`HOT_PATH_TEXT` (Python's to tokenize)."""
        on_path = [HOT_PATH_TEXT.fullmatch(text) is not None for text in texts]
        encodings = iter(self._tokenizer.encode_batch([t for t, ok in zip(texts, on_path) if ok],
                                                      add_special_tokens=False))
        out: list[Columns | None] = []
        for ok in on_path:
            if not ok:
                out.append(None)
                continue
            encoding = next(encodings)
            offsets = encoding.offsets
            out.append((encoding.ids, list(map(_START, offsets)), list(map(_END, offsets))))
        return out


def rust_char_tokens(vocab: dict[str, int], do_lower_case: bool) -> RustCharTokens | None:
    """A :class:`RustCharTokens`, or None where ``tokenizers`` is not installed."""
    try:
        return RustCharTokens(vocab, do_lower_case)
    except ImportError:
        return None
