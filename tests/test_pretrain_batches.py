"""Pretraining examples: data order as a pure function of (seed, step, rank), sentence pairs, id records, collate."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ernie_tiny.pretrain.batches import (PretrainDataConfig, PretrainingData, TaskType, collate, permuted_index,
                                         sample_index)
from ernie_tiny.pretrain.corpus import Document, open_corpus
from ernie_tiny.pretrain.embedded import EmbeddedCorpus
from ernie_tiny.pretrain.masking import IGNORE_INDEX, MaskingConfig, UnitLevel
from ernie_tiny.pretrain.sentence_distance import SentenceDistance, label_counts, sample_sentence_pair
from ernie_tiny.tokenization.char import CharTokenizer

DIGITS = "零一二三四五六七八九"


def numbered_corpus(n_docs, n_sentences):
    """Document d, sentence s reads 文<d>句<s>。 in Chinese numerals (every sentence unique, one char per token)."""
    def number(i):
        return "".join(DIGITS[int(c)] for c in str(i))
    return EmbeddedCorpus([Document(tuple(f"文{number(d)}句{number(s)}。" for s in range(n_sentences)))
                           for d in range(n_docs)])


@pytest.fixture(scope="module")
def tokenizer():
    return CharTokenizer.from_texts(["文句。" + DIGITS + "北京下雪江泽民"])


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 300), seed=st.integers(0, 2**31), epoch=st.integers(0, 50))
def test_permuted_index_is_a_permutation(size, seed, epoch):
    order = [permuted_index(i, size, seed, epoch) for i in range(size)]
    assert sorted(order) == list(range(size))


def test_permutations_differ_by_epoch_and_seed():
    first = [permuted_index(i, 1000, 0, 0) for i in range(1000)]
    assert first != list(range(1000))
    assert first != [permuted_index(i, 1000, 0, 1) for i in range(1000)]
    assert first != [permuted_index(i, 1000, 1, 0) for i in range(1000)]
    with pytest.raises(ValueError, match="not in"):
        permuted_index(1000, 1000, 0, 0)


def test_ranks_read_disjoint_shares_and_each_epoch_sees_every_document(tokenizer):
    corpus = numbered_corpus(48, 3)
    data = PretrainingData(corpus, tokenizer, PretrainDataConfig(max_len=32, batch_size=4, seed=5,
                                                                 masking=MaskingConfig(basic=1, phrase=0, entity=0)))
    seen = [e.document for step in range(6) for rank in range(2) for e in data.examples_for_step(step, rank, 2)]
    assert sorted(seen) == list(range(48))  # 6 steps x 2 ranks x 4 = one epoch, no document twice
    assert sample_index(3, 1, 2, 4, 2) == 30
    with pytest.raises(ValueError, match="rank 2"):
        data.examples_for_step(0, 2, 2)


def test_a_resumed_run_sees_the_same_batches(tokenizer):
    config = PretrainDataConfig(max_len=24, batch_size=3, seed=1, sentence_distance=True)
    before = PretrainingData(numbered_corpus(10, 5), tokenizer, config).examples_for_step(7, 1, 2)
    after = PretrainingData(numbered_corpus(10, 5), tokenizer, config).examples_for_step(7, 1, 2)
    assert before == after
    other_seed = PretrainDataConfig(max_len=24, batch_size=3, seed=2, sentence_distance=True)
    assert PretrainingData(numbered_corpus(10, 5), tokenizer, other_seed).examples_for_step(7, 1, 2) != before


def decode_pair(tokenizer, example):
    tokens = [tokenizer.id_to_token(label if label != IGNORE_INDEX else token)
              for token, label in zip(example.input_ids, example.mlm_labels)]  # unmasked text
    text = "".join(tokens[1:])
    a, b = text.split("[SEP]")[:2]
    return a, b


def sentence_ids(text):
    """(document, sentence) of every 文<d>句<s>。 in ``text``."""
    def value(numerals):
        return int("".join(str(DIGITS.index(c)) for c in numerals))
    parts = [piece.strip().split("句") for piece in text.replace("文", " ").split("。")]
    return [(value(p[0]), value(p[1])) for p in parts if len(p) == 2 and p[0] and p[1]]


def test_sentence_pairs_carry_true_distance_labels(tokenizer):
    config = PretrainDataConfig(max_len=40, batch_size=16, seed=3, sentence_distance=True, pair_share=1.0)
    data = PretrainingData(numbered_corpus(6, 8), tokenizer, config)
    labels = []
    for step in range(8):
        for example in data.examples_for_step(step):
            assert example.task_type is TaskType.sentence_distance
            a, b = decode_pair(tokenizer, example)
            last_a, first_b = sentence_ids(a)[-1], sentence_ids(b)[0]
            label = SentenceDistance(example.sentence_distance_label)
            labels.append(label)
            if label is SentenceDistance.other_document:
                assert last_a[0] != first_b[0]
            else:
                assert last_a[0] == first_b[0]
                assert first_b[1] - last_a[1] == 1 if label is SentenceDistance.adjacent else first_b[1] - last_a[1] >= 2
            assert all(t == 0 for t in example.token_type_ids[:len(a) + 2])
    assert {label: labels.count(label) for label in SentenceDistance}[SentenceDistance.same_document] > 20


def test_sentence_pair_sampling_falls_back_for_short_documents():
    counts = {0: 1, 1: 2, 2: 9}
    rng = np.random.default_rng(0)
    for _ in range(300):  # no redrawn anchor: the label falls back to what the document allows
        pair = sample_sentence_pair(0, counts.__getitem__, 3, rng, retries=0)
        assert pair.label is SentenceDistance.other_document and pair.b.document != 0  # one sentence: only that
        pair = sample_sentence_pair(1, counts.__getitem__, 3, rng, retries=0)
        assert pair.label is not SentenceDistance.same_document and pair.a.document == 1
    with pytest.raises(ValueError, match="two documents"):
        sample_sentence_pair(0, lambda d: 1, 1, rng)
    balanced = label_counts(lambda d: 10, 5, 3000)
    assert all(abs(n / 3000 - 1 / 3) < 0.04 for n in balanced.values())
    # nine documents in ten have one sentence: redrawn anchors keep the labels balanced ...
    mostly_short = label_counts(lambda d: 5 if d % 10 == 0 else 1, 100, 3000)
    assert all(abs(n / 3000 - 1 / 3) < 0.04 for n in mostly_short.values())
    # ... where falling back alone would make "other document" the answer nine times in ten
    fallback = label_counts(lambda d: 5 if d % 10 == 0 else 1, 100, 3000, retries=0)
    assert fallback[SentenceDistance.other_document] / 3000 > 0.85


def test_text_examples_fill_max_len_and_are_masked_at_their_level(tokenizer):
    config = PretrainDataConfig(max_len=20, batch_size=8, seed=0, masking=MaskingConfig(basic=0, phrase=0, entity=1))
    corpus = EmbeddedCorpus([Document(("江泽民在北京。",) * 6, ((("江", "nr"), ("泽民", "nr"), ("在", "p"),
                                                                  ("北京", "ns"), ("。", "w")),) * 6)])
    data = PretrainingData(corpus, tokenizer, config)
    for example in data.examples_for_step(0):
        assert len(example.input_ids) == 20 and example.level is UnitLevel.entity
        assert example.task_type is TaskType.masked_lm and example.sentence_distance_label == IGNORE_INDEX
        assert sum(label != IGNORE_INDEX for label in example.mlm_labels) <= 0.15 * 18 + 1


def test_id_records_are_truncated_on_sep_and_map_next_sentence_labels(tmp_path):
    line = "1 5 6 7 2 8 9 10 11 2;0 0 0 0 0 1 1 1 1 1;0 1 2 3 4 5 6 7 8 9;-1 0 1 0 -1 0 1 1 0 -1;1\n"
    path = tmp_path / "ids.txt"
    path.write_text(line + line.replace(";1\n", ";0\n"))
    tokenizer = CharTokenizer({t: i for i, t in enumerate(["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"] + list("甲乙丙丁戊己庚"))})
    config = PretrainDataConfig(max_len=8, batch_size=2, seed=0, sentence_distance=True)
    data = PretrainingData(open_corpus([path]), tokenizer, config)
    examples = data.examples_for_step(0)
    by_document = {e.document: e for e in examples}
    for example in examples:
        original = [label if label != IGNORE_INDEX else token for token, label in zip(example.input_ids,
                                                                                     example.mlm_labels)]
        assert original == [1, 5, 6, 7, 2, 8, 9, 2] and example.token_type_ids == (0, 0, 0, 0, 0, 1, 1, 1)
        assert example.mlm_labels[0] == example.mlm_labels[4] == example.mlm_labels[7] == IGNORE_INDEX
    assert by_document[0].sentence_distance_label == SentenceDistance.adjacent
    assert by_document[1].sentence_distance_label == SentenceDistance.other_document


def test_collate_pads_and_adds_task_ids_only_with_sentence_distance(tokenizer):
    data = PretrainingData(numbered_corpus(4, 4), tokenizer, PretrainDataConfig(max_len=30, batch_size=4,
                                                                               sentence_distance=True))
    examples = data.examples_for_step(0)
    batch = data.collate(examples)
    width = max(len(e.input_ids) for e in examples)
    assert batch.input_ids.shape == (4, width) and batch.sentence_distance_labels.shape == (4,)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        assert batch.attention_mask[row].sum() == n
        assert (batch.mlm_labels[row, n:] == IGNORE_INDEX).all() and (batch.input_ids[row, n:] == 0).all()
        assert (batch.task_type_ids[row, :n] == int(example.task_type)).all()
    plain = collate(examples, pad_id=0)
    assert plain.task_type_ids is None and plain.sentence_distance_labels is None
    assert torch.equal(plain.input_ids, batch.input_ids)
    assert set(batch.model_inputs()) == {"input_ids", "token_type_ids", "attention_mask", "labels",
                                         "sentence_distance_labels", "task_type_ids"}


def test_config_validation_and_round_trip():
    config = PretrainDataConfig(max_len=64, sentence_distance=True, masking=MaskingConfig(basic=1, phrase=0, entity=0))
    assert PretrainDataConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="pair_share"):
        PretrainDataConfig(pair_share=1.5)
    with pytest.raises(ValueError, match="unknown PretrainDataConfig fields: steps"):
        PretrainDataConfig.from_dict({"steps": 3})
