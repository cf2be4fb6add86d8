"""SubwordTokenizer: normalisation, segmentation, ids, pairs, truncation, files, and exact spans (hypothesis)."""

from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ernie_tiny.data.embedded_text import embedded_corpus_texts
from ernie_tiny.tokenization.encoding import CLS, MASK, PAD, SEP, UNK, TokenSpan
from ernie_tiny.tokenization.subword import SubwordTokenizer, TokenizerFileError, train_subword_tokenizer
from ernie_tiny.tokenization.subword.normalize import normalize_text
from ernie_tiny.tokenization.subword.pieces import _spm_offsets_from_bytes, piece_text
from ernie_tiny.tokenization.wordseg import JiebaSegmenter
from ernie_tiny.tokenization.load import load_tokenizer

# Review + news text, a mix of everything the tokenizer meets; 3000 pieces train in ~3 s.
CORPUS_SAMPLE = embedded_corpus_texts()[::30]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    tokenizer = train_subword_tokenizer(CORPUS_SAMPLE, out, vocab_size=3000)
    return tokenizer, out


# ---- normalisation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected, origin", [
    ("Ｈello  世界 ", "hello 世界", (0, 1, 2, 3, 4, 5, 7, 8)),
    ("İ", "i", (0,)),  # lower-casing makes 2 chars, the accent is stripped like the char tokenizer does
    ("ﬁ", "fi", (0, 0)),  # one source char, two normalised chars: both point back to it
    ("a\u200db\x00c", "abc", (0, 2, 4)),  # format and control chars vanish
    ("\t a \u3000\n", "a", (2,)),
    ("１２３，ＡＢＣ", "123,abc", (0, 1, 2, 3, 4, 5, 6)),
    ("x\ud800", "x\ufffd", (0, 1)),  # a lone surrogate becomes an unknown char instead of crashing UTF-8
])
def test_normalize_keeps_source_index_of_every_char(text, expected, origin):
    norm = normalize_text(text)
    assert norm.text == expected
    assert norm.origin == origin


# ---- encoding -------------------------------------------------------------------------------------

def test_encode_single_and_pair_layout(trained):
    tok, _ = trained
    enc = tok.encode("酒店很干净", "房间不错")
    assert enc.tokens[0] == CLS and enc.tokens.count(SEP) == 2 and enc.tokens[-1] == SEP
    first_sep = enc.tokens.index(SEP)
    assert enc.token_type_ids == [0] * (first_sep + 1) + [1] * (len(enc) - first_sep - 1)
    assert enc.spans[0] == TokenSpan(-1, 0, 0)
    assert enc.spans[first_sep] == TokenSpan(-1, 1, 1) and enc.spans[-1] == TokenSpan(-1, 2, 2)
    assert enc.input_ids == [tok.token_to_id(t) for t in enc.tokens]
    # the pieces cover each text exactly, in order
    a = "".join(piece_text(t) for t, s in zip(enc.tokens, enc.spans) if s.text_index == 0)
    b = "".join(piece_text(t) for t, s in zip(enc.tokens, enc.spans) if s.text_index == 1)
    assert (a, b) == ("酒店很干净", "房间不错")
    # subword: fewer tokens than chars on ordinary review text
    assert len(enc) < len("酒店很干净房间不错") + 3


def test_ernie_special_token_ids(trained):
    tok, directory = trained
    assert (tok.pad_id, tok.cls_id, tok.sep_id, tok.mask_id, tok.unk_id) == (0, 1, 2, 3, 4)
    assert [tok.id_to_token(i) for i in range(5)] == [PAD, CLS, SEP, MASK, UNK]
    assert tok.vocab_size == len((directory / "vocab.txt").read_text(encoding="utf-8").splitlines()) == 3000


def test_words_are_a_constraint_pieces_never_straddle_jieba_words(trained):
    tok, _ = trained
    segmenter = tok.pieces.segmenter
    for text in CORPUS_SAMPLE[:200]:
        norm = normalize_text(text).text
        boundaries = {0}
        for chunk in norm.split(" "):
            position = norm.index(chunk, max(boundaries)) if chunk else max(boundaries)
            for word in segmenter.words(chunk) if chunk else []:
                position += len(word)
                boundaries.add(position)
        word_of = {}
        start = 0
        for end in sorted(boundaries)[1:]:
            word_of.update({i: start for i in range(start, end)})
            start = end
        for _, s, e in tok.pieces.encode([norm])[0]:
            # a piece inside one word, or from a word start to a word end
            assert word_of.get(s) == word_of.get(e - 1) or (s in boundaries and e in boundaries), (text, s, e)


def test_unknown_chars_and_out_of_vocab_pieces_become_unk(trained, tmp_path):
    tok, directory = trained
    enc = tok.encode("好☃好")  # the snowman never occurs in the corpus
    assert enc.tokens[2] == UNK and enc.unk_mask[2] and enc.spans[2] == TokenSpan(0, 1, 2)
    lone_surrogate = tok.encode("好\ud800")  # cannot be UTF-8 encoded for sentencepiece: an unknown char
    assert lone_surrogate.tokens[1:-1] == ["好", UNK] and lone_surrogate.spans[2] == TokenSpan(0, 1, 2)
    # a vocab.txt without the piece "酒店": sentencepiece still emits it, the id is [UNK]'s
    vocab = [t for t in (directory / "vocab.txt").read_text(encoding="utf-8").splitlines() if t != "酒店"]
    reduced = SubwordTokenizer((directory / "spm.model").read_bytes(), vocab, tok.config)
    assert "酒店" in tok.encode("酒店").tokens
    assert reduced.encode("酒店").tokens[1:-1] == [UNK]


def test_byte_offsets_of_older_sentencepiece_become_char_offsets():
    # older sentencepiece reports UTF-8 byte offsets: 好 is 3 bytes, 😀 is 4, "a" is 1
    assert _spm_offsets_from_bytes("好a😀好", [(5, 0, 3), (6, 3, 8), (7, 8, 11)]) == [(5, 0, 1), (6, 1, 3), (7, 3, 4)]


def test_truncation_longest_first(trained):
    tok, _ = trained
    long_a = "房间很大，服务很好。" * 20
    full = tok.encode(long_a, "早餐不错")
    enc = tok.encode(long_a, "早餐不错", max_len=16)
    assert len(enc) == 16 and enc.truncated and not full.truncated
    b_tokens = [t for t, s in zip(enc.tokens, enc.spans) if s.text_index == 1]
    assert b_tokens == [t for t, s in zip(full.tokens, full.spans) if s.text_index == 1]  # the short text survives
    assert enc.tokens[:10] == full.tokens[:10]  # the long one loses its end
    assert len(tok.encode("a" * 50 + "好" * 50, max_len=2)) == 2
    with pytest.raises(ValueError, match="max_len"):
        tok.encode("好", "好", max_len=2)


def test_encode_batch_matches_encode_and_accepts_bare_strings(trained):
    tok, _ = trained
    pairs = [("酒店很干净", None), ("这是什么？", "那是什么"), ("", "")]
    batch = tok.encode_batch(pairs + ["单独一句"], max_len=32)
    assert [e.input_ids for e in batch] == [tok.encode(a, b, 32).input_ids for a, b in pairs + [("单独一句", None)]]
    with pytest.raises(TypeError):
        tok.encode_batch([(None, None)])


def test_user_dictionary_changes_the_words(tmp_path):
    texts = ["我在云计算公司工作", "云计算很热门"] * 20 + CORPUS_SAMPLE[:100]
    user_dict = tmp_path / "user.txt"
    user_dict.write_text("云计算公司 100000 n\nＸＸ词典 5\n", encoding="utf-8")
    custom = train_subword_tokenizer(texts, tmp_path / "custom", vocab_size=1500, user_dict=user_dict)
    assert "云计算公司" not in JiebaSegmenter().words("我在云计算公司工作")  # jieba's own dictionary
    assert "云计算公司" in custom.pieces.segmenter.words("我在云计算公司工作")
    assert "云计算公司" not in JiebaSegmenter().words("我在云计算公司工作")  # the user words stay private
    assert "xx词典" in custom.pieces.segmenter.words("xx词典")  # user words are normalised like the text
    reloaded = SubwordTokenizer.from_directory(tmp_path / "custom")
    assert (tmp_path / "custom" / "user_dict.txt").is_file()
    assert reloaded.encode("我在云计算公司工作").input_ids == custom.encode("我在云计算公司工作").input_ids


# ---- files ---------------------------------------------------------------------------------------

def test_save_load_roundtrip_and_loader_dispatch(trained, tmp_path):
    tok, directory = trained
    config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["kind"] == "subword" and config["segmentation"] == "jieba"
    assert config["training"]["vocab_size"] == 3000 and config["training"]["chars"] > 100_000
    tok.save(tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["spm.model", "tokenizer_config.json", "vocab.txt"]
    again = load_tokenizer(tmp_path / "copy")
    assert isinstance(again, SubwordTokenizer) and again.kind == "subword"
    text = "交通方便，房间干净。Wi-Fi 很快！"
    assert again.encode(text).input_ids == tok.encode(text).input_ids


def test_bad_files_stop_with_one_clear_line(trained, tmp_path):
    _, directory = trained

    def copy_to(name):
        target = tmp_path / name
        target.mkdir()
        for path in directory.iterdir():
            (target / path.name).write_bytes(path.read_bytes())
        return target

    missing = copy_to("missing")
    (missing / "spm.model").unlink()
    with pytest.raises(TokenizerFileError, match=r"spm.model: sentencepiece model file not found"):
        SubwordTokenizer.from_directory(missing)

    corrupt = copy_to("corrupt")
    (corrupt / "spm.model").write_bytes(b"\x00garbage, not a protobuf" * 10)
    with pytest.raises(TokenizerFileError, match=r"spm.model: not a sentencepiece model"):
        SubwordTokenizer.from_directory(corrupt)

    empty = copy_to("empty")
    (empty / "spm.model").write_bytes(b"")
    with pytest.raises(TokenizerFileError, match=r"spm.model: empty sentencepiece model file"):
        SubwordTokenizer.from_directory(empty)

    no_mask = copy_to("no_mask")
    lines = (no_mask / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (no_mask / "vocab.txt").write_text("\n".join(t for t in lines if t != MASK) + "\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"vocab.txt: vocabulary lacks the special token\(s\) \[MASK\]"):
        SubwordTokenizer.from_directory(no_mask)

    repeated = copy_to("repeated")
    (repeated / "vocab.txt").write_text("[PAD]\n[CLS]\n[PAD]\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"vocab.txt:3: token '\[PAD\]' repeats line 1"):
        SubwordTokenizer.from_directory(repeated)

    bad_config = copy_to("bad_config")
    (bad_config / "tokenizer_config.json").write_text('{"kind": "char"}', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"tokenizer kind is 'char', expected 'subword'"):
        SubwordTokenizer.from_directory(bad_config)
    (bad_config / "tokenizer_config.json").write_text('{"kind": "subword", "segmentation": "magic"}', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"tokenizer_config.json: 'magic' is not a valid Segmentation"):
        SubwordTokenizer.from_directory(bad_config)

    with pytest.raises(TokenizerFileError, match="no such tokenizer folder"):
        SubwordTokenizer.from_directory(tmp_path / "nowhere")


def test_word_list_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "dict.wordseg.pickle"
    path.write_bytes(pickle.dumps({"词": Evil()}))
    from ernie_tiny.tokenization.subword.files import read_wordseg_dict

    with pytest.raises(TokenizerFileError, match=r"dict.wordseg.pickle: not a pickled word list .*builtins.print"):
        read_wordseg_dict(path)


def test_training_rejects_too_small_vocab_and_empty_corpus(tmp_path):
    with pytest.raises(ValueError, match="vocab_size must be at least"):
        train_subword_tokenizer(["好"], None, vocab_size=5)
    with pytest.raises(ValueError, match="no text"):
        train_subword_tokenizer([" ", "\u200b"], None, vocab_size=100)
    # a vocabulary smaller than the corpus' alphabet keeps the most frequent chars; the rest are [UNK]
    small = train_subword_tokenizer(CORPUS_SAMPLE[:800], None, vocab_size=600)
    assert small.vocab_size <= 600 and small.config.training["character_coverage"] < 1.0


# ---- spans: property tests --------------------------------------------------------------------------

TRICKY = ("酒店很干净，房间不错！価格 Hello WORLD 123 ４５６ ＡＢＣ ｈｔｔｐ İstanbul ﬁ ㍻ ß Σ é e\u0301 "
          "👍😀👨‍👩‍👧 \u3000\u00a0\t\n\r\x00\x7f\u200b\ufeff\u2581 ( ) [SEP] [UNK] ~!@#$%^&*")
texts = st.one_of(st.text(max_size=60), st.text(alphabet=TRICKY, max_size=60))


def check_spans(tok: SubwordTokenizer, text: str, index: int, enc, allow_empty: bool) -> None:
    spans = [(t, s) for t, s in zip(enc.tokens, enc.spans) if s.text_index == index]
    previous_start = previous_end = 0
    for token, span in spans:
        assert 0 <= span.start <= span.end <= len(text)
        assert allow_empty or span.start < span.end
        assert span.start >= previous_start and span.end >= previous_end  # ordered
        previous_start, previous_end = span.start, span.end
        if token != UNK:
            # the piece is (part of) the normalised source text under its span
            assert piece_text(token) in normalize_text(text[span.start:span.end], tok.config.do_lower_case).text
    if not enc.truncated:
        covered = set()
        for _, span in spans:
            covered.update(range(span.start, span.end))
        for i, char in enumerate(text):  # every char that survives normalisation belongs to some token
            if normalize_text(char).text.strip():
                assert i in covered, (text, i)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text_a=texts, text_b=st.one_of(st.none(), texts), max_len=st.integers(3, 64))
def test_spans_are_exact_for_any_input(trained, text_a, text_b, max_len):
    tok, _ = trained
    enc = tok.encode(text_a, text_b, max_len=max_len)
    assert len(enc) <= max_len
    assert len(enc.spans) == len(enc.tokens) == len(enc.input_ids)
    check_spans(tok, text_a, 0, enc, allow_empty=False)
    if text_b is not None:
        check_spans(tok, text_b, 1, enc, allow_empty=False)
    # the pieces of an untruncated text spell its normalised form, spaces aside
    if not enc.truncated:
        norm = normalize_text(text_a)
        pieces = tok.pieces.encode([norm.text])[0]
        assert "".join(norm.text[s:e] for _, s, e in pieces) == norm.text.replace(" ", "")

