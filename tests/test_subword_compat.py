"""ERNIE-tiny release compatibility: vocab.txt + spm_cased_simp_sampled.model + dict.wordseg.pickle.

The release files cannot be downloaded here, so the test writes small files in the same
formats: a sentencepiece model with default options (nmt_nfkc, dummy prefix) trained on
dictionary-segmented text joined by spaces, a ``token<TAB>id`` vocab.txt that lacks some
pieces, and a pickled ``{word: count}`` dict. The reference is ERNIE's ``WSSPTokenizer``.
"""

from __future__ import annotations

import unicodedata
import pickle

import pytest
import sentencepiece as spm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from release_fixture import write_release_pieces, wssp_cut, wssp_pieces

from ernie_tiny.commands.segment import segment_app
from ernie_tiny.data.embedded_text import embedded_corpus_texts
from ernie_tiny.tokenization.encoding import UNK
from ernie_tiny.tokenization.subword import SubwordTokenizer, TokenizerFileError
from ernie_tiny.tokenization.subword.pieces import piece_text

WORDS = {"酒店": 50, "房间": 40, "服务": 30, "干净": 20, "不错": 20, "早餐": 10, "交通": 10, "方便": 10,
         "中华人民共和国": 5, "人民": 8, "北京": 9, "我们": 12, "没有": 15, "非常": 11, "he": 6, "was": 6,
         "Hotel": 3}
TEXTS = embedded_corpus_texts()[::60]


def wssp_tokenize(text: str, words: dict, processor: spm.SentencePieceProcessor, vocab: set[str]) -> list[str]:
    """ERNIE's WSSPTokenizer.tokenize (ws=True, lower=True): the cut sees the text as written."""
    return [t if t in vocab else UNK for t in wssp_pieces(text, words, processor)]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ernie_tiny_release")
    (directory / "subword").mkdir()
    joined = [" ".join(w for w in wssp_cut(t.lower(), WORDS) if w.strip()) for t in TEXTS]
    processor, vocab, dropped = write_release_pieces(directory, joined, vocab_size=3000, dropped=slice(200, 260))
    # protocol 2, as the release's Python 2 era pickle
    (directory / "subword" / "dict.wordseg.pickle").write_bytes(pickle.dumps(WORDS, protocol=2))
    return directory, processor, set(vocab), dropped


@pytest.fixture(scope="module")
def release_tokenizer(release):
    return SubwordTokenizer.from_directory(release[0])


SAMPLES = ["酒店房间非常干净，服务不错", "中华人民共和国北京", "我们没有吃早餐。交通很方便！", "hello world 123",
           "房间 干净", "", "☃", "He was here", "he was here", "the Hotel was fine, the hotel WAS fine", "ΣΑΣ was"]


def test_release_mode_matches_ernie_wssp_tokenizer(release):
    directory, processor, vocab, dropped = release
    tok = SubwordTokenizer.from_directory(directory)  # no tokenizer_config.json: the release layout
    assert tok.config.segmentation.value == "wordseg" and tok.config.word_boundary.value == "space"
    texts = SAMPLES + TEXTS[1::7][:150]
    saw_dropped = False
    for text, enc in zip(texts, tok.encode_batch(texts, max_len=4096)):
        expected = wssp_tokenize(text, WORDS, processor, vocab)
        assert enc.tokens[1:-1] == expected, text
        saw_dropped |= any(p in dropped for p in processor.EncodeAsPieces(text))
    assert saw_dropped  # the out-of-vocab -> [UNK] path was exercised
    ids = tok.encode("酒店").input_ids
    assert ids[1] == [line.split("\t")[0] for line in (directory / "vocab.txt").read_text("utf-8").splitlines()
                      ].index(tok.encode("酒店").tokens[1])


def test_release_mode_via_wordseg_dict_option_and_save(release, tmp_path):
    directory, _, _, _ = release
    dict_path = directory / "subword" / "dict.wordseg.pickle"
    tok = SubwordTokenizer.from_release(directory, wordseg_dict=dict_path)
    tok.save(tmp_path / "copy")
    assert (tmp_path / "copy" / "dict.wordseg.pickle").read_bytes() == dict_path.read_bytes()
    again = SubwordTokenizer.from_directory(tmp_path / "copy")
    assert again.encode("酒店房间非常干净").input_ids == tok.encode("酒店房间非常干净").input_ids
    # the CLI flag: --wordseg-dict
    result = CliRunner().invoke(segment_app, ["encode", "--tokenizer", str(directory), "--text", "酒店房间非常干净",
                                              "--wordseg-dict", str(dict_path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "pieces: " + " ".join(tok.encode("酒店房间非常干净").tokens)


def test_release_mode_bad_files(release, tmp_path):
    directory, _, _, _ = release
    (tmp_path / "vocab.txt").write_bytes((directory / "vocab.txt").read_bytes())
    (tmp_path / "spm_cased_simp_sampled.model").write_bytes((directory / "subword" / "spm_cased_simp_sampled.model")
                                                             .read_bytes())
    with pytest.raises(TokenizerFileError, match=r"dict.wordseg.pickle: word-segmentation dictionary not found"):
        SubwordTokenizer.from_directory(tmp_path)
    (tmp_path / "dict.wordseg.pickle").write_bytes(b"not a pickle")
    with pytest.raises(TokenizerFileError, match=r"dict.wordseg.pickle: not a pickled word list"):
        SubwordTokenizer.from_directory(tmp_path)
    (tmp_path / "dict.wordseg.pickle").write_bytes(pickle.dumps(42))
    with pytest.raises(TokenizerFileError, match=r"expected a pickled dict/set/list of words, got int"):
        SubwordTokenizer.from_directory(tmp_path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="酒店房间非常干净服务不错中华人民共和国 Ａb1，。\u3000\t☃😀ﬁ", max_size=40) | st.text(max_size=30))
def test_release_mode_spans_for_any_input(release_tokenizer, text):
    enc = release_tokenizer.encode(text, max_len=4096)
    previous = (0, 0)
    for token, span in zip(enc.tokens[1:-1], enc.spans[1:-1]):
        assert 0 <= span.start <= span.end <= len(text)
        assert (span.start, span.end) >= previous and span.end >= previous[1]
        previous = (span.start, span.end)
        if token != UNK and span.start < span.end:  # the release model normalises with NFKC itself
            assert piece_text(token) in unicodedata.normalize("NFKC", text[span.start:span.end].lower())
        if span.start == span.end:  # only a lone "▁" (the inserted space before a word) has no source chars
            assert token == "\u2581"


def test_release_mode_cuts_words_before_lower_casing(release_tokenizer):
    # "He" is not the dictionary word "he" (WSSPTokenizer cuts the text as written); "Hotel" is a word, "hotel" not
    assert release_tokenizer.config.lower_after_segmentation
    assert release_tokenizer.pieces.segmenter.words("He") == ["H", "e"]
    assert release_tokenizer.encode("He was").input_ids != release_tokenizer.encode("he was").input_ids


def test_our_own_mode_still_lower_cases_before_jieba(tmp_path):
    from ernie_tiny.tokenization.subword import SubwordConfig

    assert not SubwordConfig().lower_after_segmentation
    with pytest.raises(ValueError, match="needs word_boundary 'space'"):
        SubwordConfig(lower_after_segmentation=True)
