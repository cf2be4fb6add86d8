"""jieba.posseg over many texts (the one forked loop) and the digest of the dictionary its cuts depend on."""

from __future__ import annotations

import multiprocessing
import pickle

import pytest

from ernie_tiny.tokenization import wordseg
from ernie_tiny.tokenization.wordseg import pos_dictionary_digest, pos_words, pos_words_many
from posseg_state import private_posseg_tokenizer

TEXTS = [f"第{i}家酒店的服务{'很好' if i % 2 else '太差'}，房间{'干净' * (i % 3)}。Room {i}" for i in range(23)]


def reversed_pos_words(text: str, hmm: bool) -> list[tuple[str, str]]:
    """Another per-text function (top-level, so workers can run it): posseg's words, last first."""
    return pos_words(text, hmm)[::-1]


@pytest.mark.parametrize("hmm", [True, False])
def test_pos_words_many_keeps_order_in_workers_and_reports_each_chunk(hmm):
    serial = [pos_words(text, hmm) for text in TEXTS]
    calls: list[tuple[int, int]] = []
    parallel = pos_words_many(TEXTS, hmm, workers=2, chunk_size=4, progress=lambda done, total: calls.append((done,
                                                                                                              total)))
    assert parallel == serial == pos_words_many(TEXTS, hmm)
    assert calls == [(0, 23), (4, 23), (8, 23), (12, 23), (16, 23), (20, 23), (23, 23)]
    assert pos_words_many(TEXTS, hmm, workers=2, chunk_size=5, words_of=reversed_pos_words) == \
        [words[::-1] for words in serial]


def test_pos_words_many_with_nothing_to_do_and_bad_arguments():
    calls: list[tuple[int, int]] = []
    assert pos_words_many([], workers=2, progress=lambda done, total: calls.append((done, total))) == []
    assert calls == [(0, 0)]
    with pytest.raises(ValueError, match="workers must be >= 1"):
        pos_words_many(TEXTS, workers=0)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        pos_words_many(TEXTS, chunk_size=0)


def test_pos_words_many_runs_in_spawned_workers(monkeypatch):
    """Where fork is missing (macOS, Windows) workers are spawned: the worker and word functions travel by name."""
    from ernie_tiny.pretrain.wordcache import sentence_pos_words

    for function in (wordseg._pos_words_chunk, pos_words, sentence_pos_words):
        assert pickle.loads(pickle.dumps(function)) is function
    monkeypatch.setattr(wordseg, "_pool_context", lambda: multiprocessing.get_context("spawn"))
    texts = TEXTS[:6]
    assert pos_words_many(texts, workers=2, chunk_size=3) == [pos_words(text) for text in texts]


def test_the_dictionary_digest_sees_every_change_that_moves_the_cuts(monkeypatch):
    tokenizer = private_posseg_tokenizer(monkeypatch)
    text = "酒店服务很到位"
    original, original_words = pos_dictionary_digest(), pos_words(text)
    assert pos_dictionary_digest() == original  # a pure function of the tables

    tokenizer.add_word("服务很到位", 100000)  # a frequency, no tag: the tag table stays as it was
    assert pos_words(text) != original_words
    added = pos_dictionary_digest()
    assert added != original

    size, total = len(tokenizer.FREQ), tokenizer.total
    tokenizer.del_word("服务很到位")  # keeps the table's size and total
    assert (len(tokenizer.FREQ), tokenizer.total) == (size, total) and pos_words(text) == original_words
    deleted = pos_dictionary_digest()
    assert deleted not in (original, added)

    tokenizer.suggest_freq(("酒店", "服务"), tune=True)
    tuned = pos_dictionary_digest()
    tokenizer.add_word("很到位", 50, tag="a")  # a user word's tag, before any cut merges it into posseg's table
    assert len({original, added, deleted, tuned, pos_dictionary_digest()}) == 5
    assert ("很到位", "a") in pos_words(text)

    monkeypatch.undo()  # jieba's own tables are back, as every other test expects
    assert pos_dictionary_digest() == original and pos_words(text) == original_words
