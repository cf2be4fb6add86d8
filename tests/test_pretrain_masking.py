"""ERNIE 1.0 knowledge masking: units on hand-made tagged sentences, and masking properties."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from masking_reference import (reference_entity_units, reference_mask_tokens, reference_phrase_units,
                               reference_text_units, reference_token_units)
from masking_units import encoding_units, text_units

from ernie_tiny.pretrain.masking import (IGNORE_INDEX, MaskingConfig, MaskUnit, TextUnit, UnitLevel, choose_level,
                                         mask_tokens, seg_label_units, select_units, token_units, word_spans)
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.tokenization.encoding import MASK
from ernie_tiny.tokenization.wordseg import pos_words

# People's Daily style: the surname and the given name are tagged apart.
SENTENCE = [("江", "nr"), ("泽民", "nr"), ("在", "p"), ("北京", "ns"), ("会见", "v"), ("了", "u"), ("中央", "n"),
            ("人民", "n"), ("广播", "vn"), ("电台", "n"), ("的", "u"), ("三", "m"), ("位", "q"), ("记者", "n"),
            ("。", "w")]
TEXT = "".join(w for w, _ in SENTENCE)
ALPHABET = "江泽民在北京会见了中央人民广播电台的三位记者。上海新华社发表讲话国家主席好很"
TAGS = ["nr", "ns", "nt", "nz", "n", "vn", "a", "b", "m", "q", "v", "u", "p", "w", "d", "nrfg"]


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer.from_texts([ALPHABET])


def replacement_ids(tokenizer):
    return np.array([i for t, i in tokenizer.vocab.items() if not t.startswith("[")], dtype=np.int64)


def unit_texts(units, text):
    return [text[u.start:u.end] for u in units]


def entity_units(words):
    return [unit for unit in text_units(UnitLevel.entity, words, 4) if unit.priority]


def phrase_units(words, max_phrase_words):
    return text_units(UnitLevel.phrase, words, max_phrase_words)


def test_entities_merge_surname_and_given_name():
    units = entity_units(word_spans(SENTENCE))
    assert unit_texts(units, TEXT) == ["江泽民", "北京"]
    assert all(u.priority for u in units)
    # two people in a row are two entities (more than 4 chars together), jieba's nrfg is a person too
    two = word_spans([("邓", "nr"), ("小平", "nr"), ("周恩来", "nrfg")])
    assert unit_texts(entity_units(two), "邓小平周恩来") == ["邓小平", "周恩来"]


def test_phrases_chunk_noun_runs_and_numeral_measure():
    units = phrase_units(word_spans(SENTENCE), max_phrase_words=4)
    assert unit_texts(units, TEXT) == ["江泽民", "在", "北京", "会见", "了", "中央人民广播电台", "的", "三位", "记者", "。"]
    short = phrase_units(word_spans(SENTENCE), max_phrase_words=2)
    assert "中央人民" in unit_texts(short, TEXT) and "广播电台" in unit_texts(short, TEXT)


def test_entity_level_is_entities_then_phrases_partitioning_the_text():
    units = text_units(UnitLevel.entity, word_spans(SENTENCE), 4)
    assert unit_texts(units, TEXT) == ["江泽民", "在", "北京", "会见", "了", "中央人民广播电台", "的", "三位", "记者", "。"]
    assert [u.priority for u in units][:3] == [True, False, True]
    assert "".join(unit_texts(units, TEXT)) == TEXT  # a partition: no gap, no overlap


def test_encoding_units_map_back_to_the_text(tokenizer):
    encoding = tokenizer.encode(TEXT, max_len=64)
    units = encoding_units(encoding, [word_spans(SENTENCE)], UnitLevel.entity, MaskingConfig())
    spans = encoding.spans
    texts = [TEXT[spans[u.start].start:spans[u.end - 1].end] for u in units]
    assert texts[:3] == ["江泽民", "在", "北京"]
    assert [(u.start, u.end) for u in units][:3] == [(1, 4), (4, 5), (5, 7)]  # [CLS] is position 0, in no unit
    basic = encoding_units(encoding, [None], UnitLevel.basic, MaskingConfig())
    assert [(u.start, u.end) for u in basic] == [(i, i + 1) for i in range(1, len(TEXT) + 1)]


def test_entities_are_chosen_first():
    units = [MaskUnit(1, 2), MaskUnit(2, 4, priority=True), MaskUnit(4, 5), MaskUnit(5, 6), MaskUnit(6, 7)]
    for seed in range(20):  # 6 tokens at rate 0.5: budget 3, and the 2-token entity always goes in
        chosen = select_units(units, 0.5, np.random.default_rng(seed))
        assert MaskUnit(2, 4, priority=True) in chosen and sum(len(u) for u in chosen) == 3


def test_jieba_tags_give_entities_for_untagged_text():
    words = pos_words("江泽民在北京会见了记者")
    assert "".join(w for w, _ in words) == "江泽民在北京会见了记者"
    assert unit_texts(entity_units(word_spans(words)), "江泽民在北京会见了记者") == ["江泽民", "北京"]


def test_seg_labels_give_word_units():
    # the seed README's convention: 0 word start, 1 inside a word, -1 [CLS]/[SEP]
    labels = [-1, 0, 1, 0, 0, 1, 1, -1, 0, 1, -1]
    assert [(u.start, u.end) for u in seg_label_units(labels, UnitLevel.phrase)] == [(1, 3), (3, 4), (4, 7), (8, 10)]
    assert seg_label_units(labels, UnitLevel.entity) == seg_label_units(labels, UnitLevel.phrase)
    assert [(u.start, u.end) for u in seg_label_units(labels, UnitLevel.basic)] == [
        (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (8, 9), (9, 10)]


def test_config_is_validated_and_round_trips():
    config = MaskingConfig(basic=1.0, phrase=0.0, entity=0.0)
    assert MaskingConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="sum to 1"):
        MaskingConfig(basic=0.5, phrase=0.4, entity=0.4)
    with pytest.raises(ValueError, match="mask_rate"):
        MaskingConfig(mask_rate=0.0)
    with pytest.raises(ValueError, match="random_share"):
        MaskingConfig(mask_share=0.8, random_share=0.3)
    with pytest.raises(ValueError, match="unknown MaskingConfig fields: bogus"):
        MaskingConfig.from_dict({"bogus": 1})
    rng = np.random.default_rng(0)
    draws = [choose_level(MaskingConfig(basic=0.2, phrase=0.3, entity=0.5), rng) for _ in range(4000)]
    assert abs(draws.count(UnitLevel.entity) / 4000 - 0.5) < 0.03
    assert abs(draws.count(UnitLevel.basic) / 4000 - 0.2) < 0.03


tagged_sentences = st.lists(st.tuples(st.text(alphabet=ALPHABET, min_size=1, max_size=4), st.sampled_from(TAGS)),
                            min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(words=tagged_sentences, level=st.sampled_from(list(UnitLevel)), seed=st.integers(0, 2**32 - 1),
       max_len=st.integers(5, 80))
def test_masking_never_splits_a_unit_and_labels_only_masked_positions(tokenizer, words, level, seed, max_len):
    text = "".join(w for w, _ in words)
    encoding = tokenizer.encode(text, max_len=max_len)
    config = MaskingConfig()
    units = encoding_units(encoding, [word_spans(words)], level, config)
    # the units partition the text tokens (truncation included)
    covered = sorted(p for u in units for p in range(u.start, u.end))
    assert covered == [i for i, s in enumerate(encoding.spans) if not s.is_special]
    masked = mask_tokens(encoding.input_ids, units, config, tokenizer.mask_id, replacement_ids(tokenizer),
                         np.random.default_rng(seed))
    labelled = {i for i, label in enumerate(masked.labels) if label != IGNORE_INDEX}
    assert labelled == {p for u in masked.chosen for p in range(u.start, u.end)}
    for unit in units:  # whole or nothing
        inside = {p in labelled for p in range(unit.start, unit.end)}
        assert len(inside) == 1
    for i, label in enumerate(masked.labels):
        if label == IGNORE_INDEX:
            assert masked.input_ids[i] == encoding.input_ids[i]
        else:
            assert label == encoding.input_ids[i]
    n = len(covered)
    assert len(labelled) <= np.floor(config.mask_rate * n + 1)
    for unit in masked.chosen:  # each masked unit's characters are a piece of the text
        piece = text[encoding.spans[unit.start].start:encoding.spans[unit.end - 1].end]
        assert piece and piece in text


def random_tagged_corpus(n_texts, seed):
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n_texts):
        words = []
        for _ in range(int(rng.integers(10, 40))):
            word = "".join(rng.choice(list(ALPHABET), size=int(rng.integers(1, 4))))
            words.append((word, TAGS[int(rng.integers(len(TAGS)))]))
        texts.append(words)
    return texts


@pytest.mark.parametrize("level", list(UnitLevel))
def test_masked_share_is_near_the_rate_and_the_80_10_10_split_holds(tokenizer, level):
    config = MaskingConfig()
    rng = np.random.default_rng(7)
    chosen = total = as_mask = as_random = kept = 0
    for words in random_tagged_corpus(500, seed=3):
        encoding = tokenizer.encode("".join(w for w, _ in words), max_len=128)
        units = encoding_units(encoding, [word_spans(words)], level, config)
        masked = mask_tokens(encoding.input_ids, units, config, tokenizer.mask_id, replacement_ids(tokenizer), rng)
        total += sum(len(u) for u in units)
        for i, label in enumerate(masked.labels):
            if label == IGNORE_INDEX:
                continue
            chosen += 1
            if masked.input_ids[i] == tokenizer.mask_id:
                as_mask += 1
            elif masked.input_ids[i] == label:
                kept += 1  # a random draw of the original token also lands here (1 in ~50)
            else:
                as_random += 1
    share = chosen / total
    assert 0.14 <= share <= 0.151, share  # whole units that do not fit are skipped: never above the rate
    assert abs(as_mask / chosen - 0.8) < 0.02
    assert abs(as_random / chosen - 0.1) < 0.02
    assert abs(kept / chosen - 0.1) < 0.02
    assert tokenizer.vocab[MASK] not in replacement_ids(tokenizer)


def test_masking_is_a_pure_function_of_its_generator(tokenizer):
    encoding = tokenizer.encode(TEXT, max_len=64)
    units = encoding_units(encoding, [word_spans(SENTENCE)], UnitLevel.phrase, MaskingConfig())
    runs = [mask_tokens(encoding.input_ids, units, MaskingConfig(mask_rate=0.3), tokenizer.mask_id,
                        replacement_ids(tokenizer), np.random.default_rng(11)) for _ in range(2)]
    assert runs[0] == runs[1]
    other = mask_tokens(encoding.input_ids, units, MaskingConfig(mask_rate=0.3), tokenizer.mask_id,
                        replacement_ids(tokenizer), np.random.default_rng(12))
    assert other != runs[0]


# ---- the fast path equals the word-by-word rules (masking_reference.py) --------------------------

many_tags = st.lists(st.tuples(st.text(alphabet=ALPHABET, min_size=1, max_size=4),
                               st.sampled_from(["nr", "ns", "nt", "nz", "n", "Ng", "vn", "an", "j", "a", "b", "m", "q",
                                                "M", "Q", "nrfg", "v", "x"])),
                     max_size=60)


@settings(max_examples=400, deadline=None)
@given(words=many_tags, max_phrase_words=st.integers(1, 5))
@example(words=[("一", "m"), ("年", "q")], max_phrase_words=1)
@example(words=[("江", "nr"), ("泽", "nr"), ("民", "nr"), ("同志", "n")], max_phrase_words=2)
def test_units_equal_the_word_by_word_rules(words, max_phrase_words):
    spans = word_spans(words)
    assert text_units(UnitLevel.phrase, spans, max_phrase_words) == reference_phrase_units(spans, max_phrase_words)
    assert text_units(UnitLevel.entity, spans, max_phrase_words) == reference_text_units(UnitLevel.entity, spans,
                                                                                        max_phrase_words)
    assert [u for u in text_units(UnitLevel.entity, spans, max_phrase_words) if u.priority] == \
        reference_entity_units(spans)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n_tokens=st.integers(0, 40))
def test_token_units_equal_the_bisect_loop(data, n_tokens):
    token_starts = sorted(data.draw(st.sets(st.integers(0, 60), min_size=n_tokens, max_size=n_tokens)))
    cuts = sorted(data.draw(st.sets(st.integers(0, 70), max_size=20)))
    units = [TextUnit(a, b, data.draw(st.booleans())) for a, b in zip(cuts[:-1], cuts[1:])
             if data.draw(st.booleans())]  # sorted, non-overlapping, with gaps
    positions = list(range(1, 1 + len(token_starts)))
    assert token_units(positions, token_starts, units) == reference_token_units(positions, token_starts, units)


@settings(max_examples=300, deadline=None)
@given(words=tagged_sentences, level=st.sampled_from(list(UnitLevel)), seed=st.integers(0, 2**32 - 1),
       max_len=st.integers(5, 80), mask_rate=st.sampled_from([0.15, 0.4, 0.9]))
def test_masks_equal_the_reference_for_the_same_generator(tokenizer, words, level, seed, max_len, mask_rate):
    encoding = tokenizer.encode("".join(w for w, _ in words), max_len=max_len)
    config = MaskingConfig(mask_rate=mask_rate)
    units = encoding_units(encoding, [word_spans(words)], level, config)
    rng, reference_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    masked = mask_tokens(encoding.input_ids, units, config, tokenizer.mask_id, replacement_ids(tokenizer), rng)
    expected = reference_mask_tokens(encoding.input_ids, units, config, tokenizer.mask_id, replacement_ids(tokenizer),
                                     reference_rng)
    assert masked == expected
    assert rng.random() == reference_rng.random()  # the same draws were taken
