"""Words and POS / entity tags of a corpus, segmented once and cached, so masking never runs jieba.

Phrase- and entity-level masking need the words and tags of every sentence they mask. People's
Daily brings its gold words; every other sentence goes through ``jieba.posseg``
(:func:`ernie_tiny.tokenization.wordseg.pos_words`), ~190 sentences/s on one core with the HMM:
far too slow to run at every example. :func:`corpus_words` segments each distinct sentence of the
documents without gold words once (in worker processes, reporting progress), adds the gold
words, and stores every sentence's word ends and tags as arrays in one ``.npz`` file in
``cache_dir`` (an example then slices its sentences' words in a few numpy operations), named by
a key over

- the corpus: its files' bytes and layout (a file corpus), or its sentences and gold words (the
  embedded corpus), and the sentence splitter;
- the segmenter: the cache format, jieba's version, the HMM flag and the dictionary state posseg cuts
  with (:func:`ernie_tiny.tokenization.wordseg.pos_dictionary_digest`: word frequencies, their total
  and the tags, so any word added to, removed from or re-weighted in jieba changes the key too).

Any change gives another key, hence a fresh segmentation; the file is written atomically, so a
crashed or concurrent build never leaves half a cache. :class:`LiveWords` segments the same
sentences on the fly instead (the uncached path): both give the same words, so the masks of a
seed are the same with and without the cache. Example::

    words = corpus_words(corpus, hmm=True, cache_dir=default_cache_dir(), progress=print)
    words.text_words(7, corpus[7], 0, 2, [0, 12])   # TextWords(starts, ends, tag classes) of sentences 0-1
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ernie_tiny.io_utils import atomic_open
from ernie_tiny.pretrain.corpus import TextCorpus
from ernie_tiny.pretrain.documents import SENTENCE_CLOSERS, SENTENCE_END, Document
from ernie_tiny.pretrain.units import SentenceWords, TextWords, tag_classes
from ernie_tiny.tokenization.wordseg import jieba_version, pos_dictionary_digest, pos_words, pos_words_many

CACHE_FORMAT = 2  # 2: gold words stored too
CHUNK_SENTENCES = 500  # sentences per worker task: balances the workers and paces the progress reports

Progress = Callable[[int, int], None]  # (sentences segmented, sentences to segment)


def sentence_pos_words(sentence: str, hmm: bool) -> list[tuple[str, str]]:
    """jieba.posseg's words of one sentence; one char per word (tag ``x``) if they ever fail to join back to it."""
    words = pos_words(sentence, hmm)
    return words if "".join(word for word, _ in words) == sentence else [(char, "x") for char in sentence]


class WordSource(Protocol):
    def text_words(self, document: int, doc: Document, first: int, last: int, offsets: list[int]) -> TextWords:
        """The words of sentences ``first:last`` of document ``document`` (``doc``) placed at char ``offsets``
        of one text: gold words when the document has them, else jieba's."""
        ...


class LiveWords:
    """The uncached path: ``jieba.posseg`` on each untagged sentence when an example needs it."""

    def __init__(self, hmm: bool = True):
        self.hmm = hmm

    def text_words(self, document: int, doc: Document, first: int, last: int, offsets: list[int]) -> TextWords:
        tagged = doc.words[first:last] if doc.words is not None else \
            [sentence_pos_words(sentence, self.hmm) for sentence in doc.sentences[first:last]]
        return TextWords.join(offsets, [SentenceWords.of(words) for words in tagged])


@dataclass
class CachedWords:
    """Every sentence's words as arrays: ``O(words)`` memory, shared by forked workers, no Python objects."""

    tags: tuple[str, ...]  # tag vocabulary
    word_ends: np.ndarray  # (n_words,) int32: end char of each word in its sentence
    word_tags: np.ndarray  # (n_words,) uint16: index into tags
    sentence_starts: np.ndarray  # (n_sentences + 1,) int64: sentence j's words are [s[j], s[j + 1])
    document_starts: np.ndarray  # (n_documents + 1,) int64: document d's sentences are [d[d], d[d + 1])
    _classes: np.ndarray | None = field(default=None, repr=False, compare=False)  # tag_classes(tags), when needed

    def text_words(self, document: int, doc: Document, first: int, last: int, offsets: list[int]) -> TextWords:
        base, end = int(self.document_starts[document]), int(self.document_starts[document + 1])
        if end - base != len(doc.sentences):
            raise ValueError(f"document {document}: the word cache holds {end - base} sentences, the corpus "
                             f"{len(doc.sentences)}; the cache does not belong to this corpus")
        if self._classes is None:
            self._classes = tag_classes(self.tags)  # (n_tags,) the class of each tag id
        last = min(last, len(doc.sentences))
        bounds = self.sentence_starts[base + first:base + last + 1]  # (S + 1,) the sentences' words are contiguous
        counts = np.diff(bounds)  # (S,) words per sentence
        ends = self.word_ends[bounds[0]:bounds[-1]].astype(np.int64)  # (W,) within each sentence
        starts = np.empty_like(ends)
        starts[1:] = ends[:-1]
        firsts = (bounds[:-1] - bounds[0])[counts > 0]
        starts[firsts] = 0  # a sentence's first word starts it
        shift = np.repeat(np.asarray(offsets, dtype=np.int64), counts)  # (W,) the sentence's place in the text
        return TextWords(starts + shift, ends + shift, self._classes[self.word_tags[bounds[0]:bounds[-1]]])

    def save(self, path: Path, key: dict) -> None:
        """One ``.npz`` file, written atomically; ``key`` is stored beside the arrays (for a reader to check)."""
        with atomic_open(path) as f:
            np.savez(f, key=np.array(json.dumps(key, sort_keys=True)), tags=np.array(json.dumps(self.tags)),
                     word_ends=self.word_ends, word_tags=self.word_tags, sentence_starts=self.sentence_starts,
                     document_starts=self.document_starts)

    @classmethod
    def load(cls, path: Path, key: dict) -> "CachedWords | None":
        """The cache at ``path``, or None when it is missing, unreadable or made under another key."""
        try:
            with np.load(path, allow_pickle=False) as saved:
                if json.loads(str(saved["key"])) != json.loads(json.dumps(key, sort_keys=True)):
                    return None
                return cls(tuple(json.loads(str(saved["tags"]))), saved["word_ends"], saved["word_tags"],
                           saved["sentence_starts"], saved["document_starts"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # a damaged file: rebuilt
            return None


def default_cache_dir() -> Path:
    """``$ERNIE_TINY_CACHE/words`` or ``~/.cache/ernie-tiny/words``."""
    root = os.environ.get("ERNIE_TINY_CACHE") or Path.home() / ".cache" / "ernie-tiny"
    return Path(root) / "words"


def segmenter_key(hmm: bool) -> dict:
    """What the segmentation depends on besides the text: format, jieba version, HMM flag, dictionary state."""
    return {"format": CACHE_FORMAT, "jieba": jieba_version(), "hmm": hmm, "dictionary": pos_dictionary_digest()[:16]}


def corpus_key(corpus) -> str:
    """sha256 over what decides the corpus's words: file bytes + layout, or the sentences and gold words themselves."""
    digest = hashlib.sha256(json.dumps([SENTENCE_END, SENTENCE_CLOSERS]).encode("utf-8"))
    if isinstance(corpus, TextCorpus):
        digest.update(json.dumps([corpus.layout.value, [f.digest for f in corpus.files]]).encode("utf-8"))
        return digest.hexdigest()
    for d in range(len(corpus)):
        doc = corpus[d]
        digest.update(json.dumps(doc.words if doc.words is not None else doc.sentences).encode("utf-8") + b"\n")
    return digest.hexdigest()


def segment_corpus(corpus, hmm: bool = True, workers: int = 1, progress: Progress | None = None) -> CachedWords:
    """Words of every sentence: gold ones as they are, the others by jieba, each distinct sentence once."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    sentences: list[str | tuple[tuple[str, str], ...]] = []  # every sentence, or its gold words, in corpus order
    document_starts = np.zeros(len(corpus) + 1, dtype=np.int64)
    for d in range(len(corpus)):
        doc = corpus[d]
        sentences.extend(doc.words if doc.words is not None else doc.sentences)
        document_starts[d + 1] = len(sentences)
    unique = list(dict.fromkeys(s for s in sentences if isinstance(s, str)))
    segmented = pos_words_many(unique, hmm, workers, CHUNK_SENTENCES, progress, words_of=sentence_pos_words)
    gold = list(dict.fromkeys(s for s in sentences if not isinstance(s, str)))
    tags = sorted({tag for words in segmented + gold for _, tag in words})
    tag_ids = {tag: i for i, tag in enumerate(tags)}
    ends_of, tags_of = {}, {}
    for sentence, words in zip(unique + gold, segmented + gold):
        ends_of[sentence] = np.cumsum([len(word) for word, _ in words], dtype=np.int64)
        tags_of[sentence] = [tag_ids[tag] for _, tag in words]
    counts = np.array([len(tags_of[s]) for s in sentences], dtype=np.int64)
    sentence_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    word_ends = (np.concatenate([ends_of[s] for s in sentences]) if sentences else np.zeros(0)).astype(np.int32)
    word_tags = np.array([t for s in sentences for t in tags_of[s]], dtype=np.uint16)
    return CachedWords(tuple(tags), word_ends, word_tags, sentence_starts, document_starts)


def corpus_words(corpus, hmm: bool = True, cache_dir: str | os.PathLike | None = None, workers: int = 1,
                 progress: Progress | None = None) -> CachedWords:
    """The cached words of ``corpus`` (see the module docstring), segmenting it first when no cache matches."""
    key = {"corpus": corpus_key(corpus), "documents": len(corpus), **segmenter_key(hmm)}
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:24]
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"words-{name}.npz"
    cached = CachedWords.load(path, key)
    if cached is not None:
        if progress is not None:
            total = int(cached.document_starts[-1])
            progress(total, total)
        return cached
    words = segment_corpus(corpus, hmm, workers, progress)
    words.save(path, key)
    return words


def needs_words(corpus, masking) -> bool:
    """True when masking ``corpus`` can draw phrase or entity units (an id corpus carries its words itself)."""
    from ernie_tiny.pretrain.corpus import IdCorpus

    return not isinstance(corpus, IdCorpus) and (masking.phrase > 0 or masking.entity > 0)
