"""ERNIE-tiny's subword tokenizer: normalise, cut into words, sentencepiece, map pieces to vocab ids.

    text -> lower-case + NFKC (per char, keeping each char's source index)
         -> words (jieba with optional user dictionary, or the release's dictionary matching)
         -> sentencepiece pieces (words as a constraint, or joined by spaces as in the release)
         -> ids through vocab.txt (pieces missing from it -> [UNK])
         -> [CLS] a [SEP] (b [SEP]), truncated longest-first

Every token carries the ``[start, end)`` span of the ORIGINAL text it covers, so a student
token can be aligned with the teacher's char tokens.

Words as a constraint (the default) run on a hot path (``fast_path.py``: jieba-rs words,
translate-table normalisation, cached word pieces in vocab ids); ``reference=True`` runs the
readable path below with Python jieba, which the parity tests hold the hot path to. Usage::

    tok = SubwordTokenizer.from_directory("runs/tokenizer")
    enc = tok.encode("酒店很干净", "房间不错", max_len=128)
    enc.tokens  # ['[CLS]', '酒店', '很干净', '[SEP]', '房间', '不错', '[SEP]']
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import sentencepiece as spm

from ernie_tiny.tokenization.encoding import (CLS, MASK, PAD, SEP, UNK, Columns, Encoding, SpecialTokenIds,
                                              encodings_from_columns, join_with_specials, truncate_longest_first)
from ernie_tiny.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text
from ernie_tiny.tokenization.subword.files import (
    RELEASE_SPM_FILE, SPM_FILE, USER_DICT_FILE, WORDSEG_DICT_FILE, TokenizerFileError, find_release_file, load_spm,
    parse_wordseg_dict, read_spm, read_user_dict, read_vocab, read_wordseg_dict, vocab_text)
from ernie_tiny.tokenization.subword.fast_path import ConstrainedTokens
from ernie_tiny.tokenization.subword.normalize import normalize_text, normalize_text_by_char
from ernie_tiny.tokenization.subword.pieces import PieceEncoder, PieceSpan, Segmentation, WordBoundary
from ernie_tiny.tokenization.wordseg import JiebaSegmenter, MaxMatchSegmenter, WordSegmenter
from ernie_tiny.tokenization.vocab_files import TOKENIZER_CONFIG, VOCAB_FILE

CONFIG_VERSION = 1


@dataclass(frozen=True)
class SubwordConfig:
    """How text becomes pieces; saved as ``tokenizer_config.json`` (plus ``"kind": "subword"``)."""

    segmentation: Segmentation = Segmentation.JIEBA  # jieba | wordseg (release dictionary) | none
    word_boundary: WordBoundary = WordBoundary.CONSTRAINT  # constraint: pieces never straddle words
    do_lower_case: bool = True
    nfkc: bool = True  # False for the release files: their sentencepiece model applies NFKC after segmentation
    wordseg_window: int = 5  # longest dictionary word tried by forward maximum matching (release: 5)
    # release: words are cut from the text as written, then lower-cased (WSSPTokenizer and PaddleNLP's
    # ErnieTinyTokenizer both cut first), so "He" is not matched as the dictionary word "he"
    lower_after_segmentation: bool = False
    training: dict[str, Any] = field(default_factory=dict)  # how the vocabulary was trained (for stats)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segmentation", Segmentation(self.segmentation))
        object.__setattr__(self, "word_boundary", WordBoundary(self.word_boundary))
        if self.wordseg_window < 1:
            raise ValueError(f"wordseg_window must be >= 1, got {self.wordseg_window}")
        if self.segmentation is Segmentation.NONE and self.word_boundary is WordBoundary.SPACE:
            raise ValueError("word_boundary 'space' needs words: use segmentation 'jieba' or 'wordseg'")
        if self.lower_after_segmentation and self.word_boundary is not WordBoundary.SPACE:
            raise ValueError("lower_after_segmentation is the release layout's rule: it needs word_boundary 'space'")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(segmentation=self.segmentation.value, word_boundary=self.word_boundary.value)
        return {"kind": SubwordTokenizer.kind, "version": CONFIG_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> "SubwordConfig":
        if not isinstance(data, dict) or data.get("kind") != SubwordTokenizer.kind:
            kind = data.get("kind") if isinstance(data, dict) else None
            raise TokenizerFileError(f"{source}: tokenizer kind is {kind!r}, expected 'subword'")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return cls(**known)
        except (ValueError, TypeError) as err:
            raise TokenizerFileError(f"{source}: {err}") from None


class SubwordTokenizer(SpecialTokenIds):
    """Subword tokenizer over a sentencepiece model and an ERNIE ``vocab.txt`` (``kind = "subword"``)."""

    kind = "subword"

    def __init__(self, spm_model: bytes, vocab: list[str], config: SubwordConfig | None = None,
                 user_dict_text: str | None = None, wordseg_dict: bytes | None = None,
                 spm_source: str = SPM_FILE, wordseg_source: str = WORDSEG_DICT_FILE,
                 processor: spm.SentencePieceProcessor | None = None, wordseg_words: frozenset[str] | None = None,
                 reference: bool = False):
        """``processor`` / ``wordseg_words``: ``spm_model`` / ``wordseg_dict`` already parsed by a file reader.
        ``reference``: the readable path with Python jieba (same output, slower; for parity checks)."""
        self.config = config or SubwordConfig()
        self.reference = reference
        self.processor: spm.SentencePieceProcessor = processor or load_spm(spm_model, spm_source)
        self._spm_model = spm_model
        self.user_dict_text = user_dict_text
        self._wordseg_dict = wordseg_dict
        self.vocab = {token: index for index, token in enumerate(vocab)}
        if len(self.vocab) != len(vocab):
            raise TokenizerFileError("vocabulary repeats a token")
        missing = [t for t in (PAD, UNK, CLS, SEP, MASK) if t not in self.vocab]
        if missing:
            raise TokenizerFileError(f"vocabulary lacks the special token(s) {', '.join(missing)}")
        self._id_to_token = list(vocab)
        segmenter: WordSegmenter | None = None
        if self.config.segmentation is Segmentation.JIEBA:
            segmenter = JiebaSegmenter(user_dict_text, reference=reference)
        elif self.config.segmentation is Segmentation.WORDSEG:
            if wordseg_dict is None:
                raise TokenizerFileError(f"segmentation 'wordseg' needs a {WORDSEG_DICT_FILE} word list")
            words = wordseg_words if wordseg_words is not None else parse_wordseg_dict(wordseg_dict, wordseg_source)
            segmenter = MaxMatchSegmenter(words, self.config.wordseg_window)
        lower_words = self.config.do_lower_case and self.config.lower_after_segmentation
        self.pieces = PieceEncoder(self.processor, segmenter, self.config.word_boundary, lower_words=lower_words)
        # sentencepiece id -> vocab id; unknown pieces and pieces missing from vocab.txt -> [UNK]
        unk = self.vocab[UNK]
        self._spm_to_vocab = [unk if self.processor.is_unknown(i) else self.vocab.get(self.processor.id_to_piece(i), unk)
                              for i in range(self.processor.get_piece_size())]
        self._fast: ConstrainedTokens | None = None
        if not reference and segmenter is not None and self.config.word_boundary is WordBoundary.CONSTRAINT:
            self._fast = ConstrainedTokens(self.pieces, self._spm_to_vocab, self.config.do_lower_case, self.config.nfkc)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_directory(cls, directory: str | os.PathLike, wordseg_dict: str | os.PathLike | None = None,
                       reference: bool = False) -> "SubwordTokenizer":
        """Load a folder written by :meth:`save`, or an ERNIE-tiny release folder (see :meth:`from_release`).

        ``wordseg_dict`` switches a folder to the release's dictionary segmentation; ``reference``
        selects the readable path (see :class:`SubwordTokenizer`).
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise TokenizerFileError(f"{directory}: no such tokenizer folder")
        config_path = directory / TOKENIZER_CONFIG
        if not config_path.is_file():
            if find_release_file(directory, RELEASE_SPM_FILE) is not None:
                return cls.from_release(directory, wordseg_dict, reference=reference)
            raise TokenizerFileError(f"{directory}: no {TOKENIZER_CONFIG} (and no {RELEASE_SPM_FILE}): "
                                     f"not a subword tokenizer folder")
        try:
            config = SubwordConfig.from_json(json.loads(config_path.read_text(encoding="utf-8")), str(config_path))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TokenizerFileError(f"{config_path}: unreadable JSON ({err})") from None
        processor, spm_model = read_spm(directory / SPM_FILE)
        vocab = read_vocab(directory / VOCAB_FILE)
        user_dict = read_user_dict(directory / USER_DICT_FILE) if (directory / USER_DICT_FILE).is_file() else None
        wordseg_path = Path(wordseg_dict) if wordseg_dict is not None else directory / WORDSEG_DICT_FILE
        wordseg_words, wordseg_bytes = None, None
        if wordseg_dict is not None or config.segmentation is Segmentation.WORDSEG:
            wordseg_words, wordseg_bytes = read_wordseg_dict(wordseg_path)
            config = replace(config, segmentation=Segmentation.WORDSEG)
        return cls(spm_model, vocab, config, user_dict_text=user_dict, wordseg_dict=wordseg_bytes,
                   spm_source=str(directory / SPM_FILE), wordseg_source=str(wordseg_path), processor=processor,
                   wordseg_words=wordseg_words, reference=reference)

    @classmethod
    def from_release(cls, directory: str | os.PathLike, wordseg_dict: str | os.PathLike | None = None,
                     reference: bool = False) -> "SubwordTokenizer":
        """The official ERNIE-tiny files: ``vocab.txt``, ``[subword/]spm_cased_simp_sampled.model`` and
        ``[subword/]dict.wordseg.pickle`` (or ``wordseg_dict``): dictionary matching (window 5), words
        joined by spaces, sentencepiece, out-of-vocab pieces -> [UNK]."""
        directory = Path(directory)
        spm_path = find_release_file(directory, RELEASE_SPM_FILE) or directory / RELEASE_SPM_FILE
        processor, spm_model = read_spm(spm_path)
        dict_path = Path(wordseg_dict) if wordseg_dict is not None else (
            find_release_file(directory, WORDSEG_DICT_FILE) or directory / WORDSEG_DICT_FILE)
        wordseg_words, wordseg_bytes = read_wordseg_dict(dict_path)
        config = SubwordConfig(segmentation=Segmentation.WORDSEG, word_boundary=WordBoundary.SPACE, nfkc=False,
                               lower_after_segmentation=True, training={"corpus": ["ERNIE-tiny release files"]})
        return cls(spm_model, read_vocab(directory / VOCAB_FILE), config, wordseg_dict=wordseg_bytes,
                   spm_source=str(spm_path), wordseg_source=str(dict_path), processor=processor,
                   wordseg_words=wordseg_words, reference=reference)

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``spm.model``, ``vocab.txt``, ``tokenizer_config.json`` and any dictionaries (each atomically)."""
        directory = Path(directory)
        atomic_write_bytes(directory / SPM_FILE, self._spm_model)
        atomic_write_text(directory / VOCAB_FILE, vocab_text(self._id_to_token))
        if self.user_dict_text is not None:
            atomic_write_text(directory / USER_DICT_FILE, self.user_dict_text)
        if self._wordseg_dict is not None:
            atomic_write_bytes(directory / WORDSEG_DICT_FILE, self._wordseg_dict)
        atomic_write_json(directory / TOKENIZER_CONFIG, self.config.to_json())

    # ---- vocabulary ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def id_to_token(self, index: int) -> str:
        return self._id_to_token[index]


    # ---- tokenization -------------------------------------------------------------------------

    def tokenize_with_spans_batch(self, texts: list[str]) -> list[list[tuple[int, int, int]]]:
        """For each text, ``(vocab id, start, end)`` per token, spans in chars of the ORIGINAL text."""
        if self._fast is not None:
            return self._fast.encode(texts)
        lower = self.config.do_lower_case and not self.config.lower_after_segmentation  # else per word, later
        normalize = normalize_text_by_char if self.reference else normalize_text
        normalized = [normalize(text, lower, self.config.nfkc) for text in texts]
        out = []
        for text, norm, pieces in zip(texts, normalized, self.pieces.encode([n.text for n in normalized])):
            out.append(self._to_vocab_spans(pieces, norm.origin, len(text)))
        return out

    def _to_vocab_spans(self, pieces: list[PieceSpan], origin: tuple[int, ...], text_len: int
                        ) -> list[tuple[int, int, int]]:
        spm_to_vocab = self._spm_to_vocab
        out = []
        for piece_id, start, end in pieces:
            if start < end:
                out.append((spm_to_vocab[piece_id], origin[start], origin[end - 1] + 1))
            else:  # zero-width (an inserted "▁"): keep the position, in original chars
                position = origin[start] if start < len(origin) else text_len
                out.append((spm_to_vocab[piece_id], position, position))
        return out

    def tokenize(self, text: str) -> list[str]:
        return [self._id_to_token[i] for i, _, _ in self.tokenize_with_spans_batch([text])[0]]

    def encode(self, text_a: str, text_b: str | None = None, max_len: int = 128) -> Encoding:
        """``[CLS] a [SEP] (b [SEP])`` with type ids 0/1, truncated longest-first to ``max_len``."""
        return self.encode_batch([(text_a, text_b)], max_len=max_len)[0]

    def encode_batch(self, pairs: list[tuple[str, str | None]] | list[str], max_len: int = 128) -> list[Encoding]:
        """:meth:`encode` each ``(text_a, text_b)`` pair (a bare string is ``(text, None)``), batched:
        sentencepiece runs once for all texts, and word pieces are cached across calls."""
        pairs = [(p, None) if isinstance(p, str) else (p[0], p[1]) for p in pairs]
        for text_a, text_b in pairs:
            if not isinstance(text_a, str) or not (text_b is None or isinstance(text_b, str)):
                raise TypeError(f"expected text strings, got {type(text_a).__name__} / {type(text_b).__name__}")
        if max_len < (3 if any(b is not None for _, b in pairs) else 2):
            raise ValueError(f"max_len {max_len} leaves no room for the special tokens")
        texts = [t for a, b in pairs for t in ((a,) if b is None else (a, b))]
        with _no_gc_pauses():
            if self.reference:
                tokenized = iter(self.tokenize_with_spans_batch(texts))
                return [self._assemble_reference(next(tokenized), None if b is None else next(tokenized), max_len)
                        for _, b in pairs]
            return encodings_from_columns(self._columns_batch(texts), [b is not None for _, b in pairs], max_len,
                                          self.cls_id, self.sep_id, self.unk_id, self._id_to_token)

    def _columns_batch(self, texts: list[str]) -> list[Columns]:
        """``(vocab ids, starts, ends)`` of each text: the hot path's own layout, or the tokens transposed."""
        if self._fast is not None:
            return self._fast.encode_columns(texts)
        return [tuple(map(list, zip(*tokens))) if tokens else ([], [], [])
                for tokens in self.tokenize_with_spans_batch(texts)]

    def _assemble_reference(self, tokens_a: list[tuple[int, int, int]], tokens_b: list[tuple[int, int, int]] | None,
                            max_len: int) -> Encoding:
        parts = [tokens_a] if tokens_b is None else [tokens_a, tokens_b]
        budget = max_len - len(parts) - 1
        truncated = sum(len(p) for p in parts) > budget
        if truncated:
            parts = truncate_longest_first(parts, budget)
        ids, type_ids, spans = join_with_specials(parts, self.cls_id, self.sep_id)
        unk = self.unk_id
        return Encoding(tokens=[self._id_to_token[i] for i in ids], input_ids=ids, token_type_ids=type_ids,
                        spans=spans, unk_mask=[i == unk for i in ids], truncated=truncated)


@contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Hold off the cyclic garbage collector during a batch.

    Encoding allocates many small objects and no reference cycles, yet the allocations trigger
    full collections that walk every object in the process (torch's included): measured ~25%
    of batch time on review text. Reference counting still frees everything at once.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
