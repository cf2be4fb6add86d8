"""CharTokenizer: hand-checked cases, exact spans, properties, and parity with transformers' BertTokenizer."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ernie_tiny.tokenization.encoding import TokenSpan
from ernie_tiny.tokenization.char import CharTokenizer, is_control, read_vocab_file, strip_accents
from ernie_tiny.tokenization.load import load_tokenizer

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
WORDS = ["酒", "店", "很", "干", "净", "房", "间", "！", "，", "。", ",", ".", "!", "4", "star", "##s", "##t", "##a",
         "##r", "un", "##aff", "##able", "hotel", "##ing", "cafe", "😀", "ａ", "##ｂ", "１", "##２", "ｎｉｃｅ", "12",
         "##3", "e", "##e", "##l", "h", "##o", "a", "σ", "##ς", "##σ", "i", "##x"]
VOCAB = {token: index for index, token in enumerate(SPECIALS + WORDS)}
DATA = Path(os.environ.get("ERNIE_TINY_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    return CharTokenizer(VOCAB)


def normalised(text: str) -> str:
    """What the tokenizer compares against the vocabulary: control chars dropped, lower-cased, accents stripped."""
    kept = "".join(c for c in text if c not in "\x00\ufffd" and not is_control(c))
    return strip_accents(kept.lower())


def test_hand_checked_mixed_text(tokenizer):
    text = "酒店很干净!Unaffable CAFÉ 4star 😀 ＡＢ１２，房間"
    assert tokenizer.tokenize_with_spans(text) == [
        ("酒", 0, 1), ("店", 1, 2), ("很", 2, 3), ("干", 3, 4), ("净", 4, 5), ("!", 5, 6),
        ("un", 6, 8), ("##aff", 8, 11), ("##able", 11, 15),
        ("cafe", 16, 20),  # "É" -> "e": accent stripped, span still covers the original É
        ("4", 21, 22), ("##s", 22, 23), ("##t", 23, 24), ("##a", 24, 25), ("##r", 25, 26),
        ("😀", 27, 28),
        ("[UNK]", 29, 33),  # "ａｂ１２" is one word; "##１" is not in the vocab, so the whole word is [UNK]
        ("，", 33, 34),  # full-width comma is Unicode punctuation
        ("房", 34, 35), ("[UNK]", 35, 36),  # traditional 間 is not in the vocabulary
    ]


def test_fullwidth_word_matches_longest_first(tokenizer):
    assert tokenizer.tokenize("ＮＩＣＥ ＡＢ １２ 123") == ["ｎｉｃｅ", "ａ", "##ｂ", "１", "##２", "12", "##3"]


def test_accents_change_length_but_spans_stay_on_source(tokenizer):
    text = "  e\u0301\u0301l  HO\u0308"  # decomposed é with two combining accents, then HÖ decomposed
    # the stripped accents belong to no token: spans cover the chars that made the token
    assert tokenizer.tokenize_with_spans(text) == [("e", 2, 3), ("##l", 5, 6), ("h", 8, 9), ("##o", 9, 10)]
    # "İ" lower-cases to two chars ("i" + combining dot), the dot is stripped: one token over one char
    assert tokenizer.tokenize_with_spans("İx") == [("i", 0, 1), ("##x", 1, 2)]


def test_final_sigma_is_lowercased_in_context_like_python(tokenizer):
    assert tokenizer.tokenize("AΣ ΣA Σ") == ["a", "##ς", "σ", "##a", "σ"]  # Latin A, Greek sigma


def test_control_chars_dropped_and_odd_whitespace_splits(tokenizer):
    text = "he\x00l\u200bl\ufffdo\u3000hotel\u2028hotel\tCafe"
    tokens = tokenizer.tokenize_with_spans(text)
    assert [t for t, _, _ in tokens] == ["h", "##e", "##l", "##l", "##o", "hotel", "hotel", "cafe"]
    assert tokens[2:6] == [("##l", 3, 4), ("##l", 5, 6), ("##o", 7, 8), ("hotel", 9, 14)]
    assert tokens[7] == ("cafe", 21, 25)


def test_long_word_and_unknown_word_are_one_unk(tokenizer):
    assert tokenizer.tokenize_with_spans("a" * 101) == [("[UNK]", 0, 101)]
    assert tokenizer.tokenize_with_spans("hotelz 酒") == [("[UNK]", 0, 6), ("酒", 7, 8)]
    assert tokenizer.tokenize("") == [] and tokenizer.tokenize(" \t\n") == []


def test_do_lower_case_false_keeps_case_and_accents():
    cased = CharTokenizer({**VOCAB, "Cafe": len(VOCAB), "Café": len(VOCAB) + 1}, do_lower_case=False)
    assert cased.tokenize("Café cafe CAFE") == ["Café", "cafe", "[UNK]"]


def test_encode_pair_layout_and_spans(tokenizer):
    enc = tokenizer.encode("酒店", "Hotel!", max_len=16)
    assert enc.tokens == ["[CLS]", "酒", "店", "[SEP]", "hotel", "!", "[SEP]"]
    assert enc.input_ids == [VOCAB[t] for t in enc.tokens]
    assert enc.token_type_ids == [0, 0, 0, 0, 1, 1, 1]
    assert enc.spans == [TokenSpan(-1, 0, 0), TokenSpan(0, 0, 1), TokenSpan(0, 1, 2), TokenSpan(-1, 1, 1),
                         TokenSpan(1, 0, 5), TokenSpan(1, 5, 6), TokenSpan(-1, 2, 2)]
    assert enc.unk_mask == [False] * 7 and not enc.truncated


def test_encode_truncates_longest_first(tokenizer):
    enc = tokenizer.encode("酒店很干净", "房间", max_len=8)  # 5 + 2 + 3 specials = 10 > 8
    assert enc.tokens == ["[CLS]", "酒", "店", "很", "[SEP]", "房", "间", "[SEP]"]
    assert enc.truncated
    enc = tokenizer.encode("酒店", "房间", max_len=5)  # ties cut the second text, as transformers does
    assert enc.tokens == ["[CLS]", "酒", "[SEP]", "房", "[SEP]"]
    single = tokenizer.encode("酒店很干净", max_len=4)
    assert single.tokens == ["[CLS]", "酒", "店", "[SEP]"] and single.token_type_ids == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="max_len 2"):
        tokenizer.encode("a", "b", max_len=2)


def test_encode_batch_and_unk_mask(tokenizer):
    encs = tokenizer.encode_batch([("酒間", None), ("店", "房")], max_len=10)
    assert [e.tokens for e in encs] == [["[CLS]", "酒", "[UNK]", "[SEP]"], ["[CLS]", "店", "[SEP]", "房", "[SEP]"]]
    assert encs[0].unk_mask == [False, False, True, False]


def test_special_ids_and_lookups(tokenizer):
    special_ids = (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id, tokenizer.unk_id)
    assert special_ids == (0, 1, 2, 3, 4)
    assert tokenizer.vocab_size == len(VOCAB)
    assert tokenizer.token_to_id("酒") == VOCAB["酒"] and tokenizer.token_to_id("nope") == 4
    assert tokenizer.id_to_token(VOCAB["店"]) == "店"
    assert [tokenizer.id_to_token(i) for i in [1, 2]] == ["[CLS]", "[SEP]"]


def test_pickles_for_worker_processes(tokenizer):
    tokenizer.tokenize("酒店")  # fills the WordPiece cache, which is not picklable itself
    again = pickle.loads(pickle.dumps(tokenizer))
    assert again.vocab == tokenizer.vocab and again.tokenize("Hotel酒") == ["hotel", "酒"]


def test_missing_special_tokens_rejected():
    with pytest.raises(ValueError, match=r"\[MASK\], \[UNK\]"):
        CharTokenizer({"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "a": 3})


def test_vocab_file_formats(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("".join(t + "\n" for t in SPECIALS + ["酒"]), encoding="utf-8")
    assert read_vocab_file(plain)["酒"] == 5
    tabbed = tmp_path / "tabbed.txt"  # ERNIE 1.0's vocab.txt: "token<TAB>id", ids need not follow line order
    tabbed.write_text("[PAD]\t0\n[CLS]\t1\n[SEP]\t2\n[MASK]\t3\n酒\t5\n[UNK]\t4\n", encoding="utf-8")
    tok = CharTokenizer.from_vocab_file(tabbed)
    assert tok.token_to_id("酒") == 5 and tok.unk_id == 4 and tok.id_to_token(5) == "酒"
    bad = tmp_path / "bad.txt"
    bad.write_text("[PAD]\t0\n[CLS]\t1\n[SEP]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:3: expected 'token<TAB>id'"):
        read_vocab_file(bad)
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("a\nb\na\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"repeated.txt:3: token 'a' repeats line 1"):
        read_vocab_file(repeated)
    gappy = tmp_path / "gappy.txt"
    gappy.write_text("a\t0\nb\t2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="gappy.txt: ids must be 0..1"):
        read_vocab_file(gappy)


def test_from_texts_order_and_limits():
    tok = CharTokenizer.from_texts(["酒店 酒", "Hotel hot", "店"], min_freq=1)
    assert [tok.id_to_token(i) for i in range(5)] == SPECIALS
    # by count desc, then by string: 酒/店/h x2, ##o/##t x2, ##e/##l x1
    assert [tok.id_to_token(i) for i in range(5, tok.vocab_size)] == ["##o", "##t", "h", "店", "酒", "##e", "##l"]
    assert tok.tokenize("hotel") == ["h", "##o", "##t", "##e", "##l"]
    assert CharTokenizer.from_texts(["酒店 酒", "Hotel hot"], min_freq=2).vocab_size == 5 + 4
    capped = CharTokenizer.from_texts(["酒店 酒", "Hotel hot"], max_size=7)
    assert [capped.id_to_token(i) for i in [5, 6]] == ["##o", "##t"]


def test_save_and_reload(tmp_path, tokenizer):
    cased = CharTokenizer(VOCAB, do_lower_case=False)
    cased.save(tmp_path)
    assert (tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines() == SPECIALS + WORDS
    again = load_tokenizer(tmp_path)
    assert isinstance(again, CharTokenizer) and again.vocab == VOCAB and again.do_lower_case is False
    (tmp_path / "tokenizer_config.json").write_text('{"kind": "subword"}', encoding="utf-8")
    with pytest.raises(ValueError, match="kind is 'subword'"):
        CharTokenizer.from_directory(tmp_path)


# ---- properties -------------------------------------------------------------------------------

# Letters that change length when normalised, odd whitespace, full-width forms, Hangul, a CJK
# compatibility ideograph, combining accents, and chars the cleaner drops (NUL, U+FFFD, controls).
ALPHABET = st.sampled_from(list("aAbBeEéÉöÖİΣσßﬁ \t\n\u2028\u3000,.!？，。：😀ＡＢ１2３한酒店豈"
                                "\u0301\u0308\x00\ufffd\x07\u200b\u00ad"))


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_crashes_and_spans_are_ordered_and_inside(text):
    tok = CharTokenizer(VOCAB)
    previous = (0, 0)
    for token, start, end in tok.tokenize_with_spans(text):
        assert 0 <= start < end <= len(text)
        assert (start, end) >= previous  # ordered (spans may share one source char, e.g. a split Hangul syllable)
        previous = (start, end)
        if token != "[UNK]":  # the token is made from the normalised source chars it points at
            assert token.removeprefix("##") in normalised(text[start:end])
    enc = tok.encode(text, text, max_len=16)
    assert len(enc) <= 16 and enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"


@settings(max_examples=300, deadline=None)
@given(st.text(ALPHABET, max_size=20))
def test_spans_cover_exactly_the_token_text(text):
    tok = CharTokenizer.from_texts([text])  # a char vocab for this text: every token is one normalised char
    tokens = tok.tokenize_with_spans(text)
    assert "[UNK]" not in [t for t, _, _ in tokens]
    # Tokens that share a span came from one source char ("한" -> 3 jamo); together they spell it.
    by_span: dict[tuple[int, int], str] = {}
    for token, start, end in tokens:
        by_span[start, end] = by_span.get((start, end), "") + token.removeprefix("##")
    for (start, end), spelled in by_span.items():
        # the source char alone: a final sigma lower-cases to "ς" only in its word's context
        assert spelled.replace("ς", "σ") == normalised(text[start:end]).replace("ς", "σ")
    covered = {i for start, end in by_span for i in range(start, end)}
    assert all(normalised(text[i]).strip() == "" for i in range(len(text)) if i not in covered)


@pytest.fixture(scope="module")
def legacy_reference(tmp_path_factory):
    legacy = pytest.importorskip("transformers.models.bert.tokenization_bert_legacy")
    folder = tmp_path_factory.mktemp("vocab")
    CharTokenizer(VOCAB).save(folder)
    return legacy.BertTokenizerLegacy(str(folder / "vocab.txt"), do_lower_case=True)


def bert_full_tokenize(reference, text: str) -> list[str]:
    """Google BERT's FullTokenizer: basic then WordPiece (HF's tokenize() would also keep "[SEP]" in text whole)."""
    return [piece for word in reference.basic_tokenizer.tokenize(text)
            for piece in reference.wordpiece_tokenizer.tokenize(word)]


@settings(max_examples=300, deadline=None)
@given(st.text(ALPHABET, max_size=24) | st.text(max_size=24))
def test_matches_transformers_python_bert_tokenizer(legacy_reference, text):
    assert CharTokenizer(VOCAB).tokenize(text) == bert_full_tokenize(legacy_reference, text)


def test_parity_with_transformers_on_real_reviews(tmp_path):
    """Token-for-token (slow python BertTokenizer) and offset-for-offset (fast one) on ChnSentiCorp dev."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    dev = DATA / "chnsenticorp_htl" / "dev.tsv"
    if not dev.is_file():
        pytest.skip(f"{dev} not found (set ERNIE_TINY_DATA to the shared data folder)")
    texts = [line.split("\t", 1)[1] for line in dev.read_text(encoding="utf-8").splitlines()[1:]]
    # A vocab from part of the texts, capped: the rest exercises [UNK] and WordPiece fallbacks.
    ours = CharTokenizer.from_texts(texts[:300], max_size=1500)
    ours.save(tmp_path)
    slow = BertTokenizerLegacy(str(tmp_path / "vocab.txt"), do_lower_case=True)
    fast = transformers.BertTokenizer(vocab=dict(ours.vocab), do_lower_case=True)
    n_unk = 0
    for text in texts:
        mine = ours.tokenize_with_spans(text)
        tokens = [t for t, _, _ in mine]
        assert tokens == bert_full_tokenize(slow, text), text
        encoded = fast(text, add_special_tokens=False, return_offsets_mapping=True)
        assert tokens == fast.convert_ids_to_tokens(encoded["input_ids"]), text
        assert [(s, e) for _, s, e in mine] == [tuple(o) for o in encoded["offset_mapping"]], text
        n_unk += tokens.count("[UNK]")
        pair = ours.encode(text, texts[0], max_len=64)
        reference = slow(text, texts[0], max_length=64, truncation="longest_first", return_token_type_ids=True)
        assert pair.input_ids == reference["input_ids"] and pair.token_type_ids == reference["token_type_ids"]
    assert n_unk > 0  # the capped vocab really did exercise unknown chars
