"""What a pretraining corpus holds: documents, ERNIE 1.0 id records, layouts and formats, and its one error.

Shared by the corpus readers (:mod:`ernie_tiny.pretrain.corpus`), their byte scanner
(:mod:`ernie_tiny.pretrain.corpus_scan`) and the embedded corpus. Torch-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

MAX_OPEN_FILES = 32
SENTENCE_END = "。！？!?"
SENTENCE_CLOSERS = "”’\"'」』）)】》"
_SENTENCE = re.compile(f"[^{SENTENCE_END}]*[{SENTENCE_END}]+[{re.escape(SENTENCE_CLOSERS)}]*|[^{SENTENCE_END}]+")
ID_FIELDS = ("token_ids", "sentence_type_ids", "position_ids", "seg_labels", "next_sentence_label")
ID_LINE = re.compile(rb"[0-9 \-]+(;[0-9 \-]+){4}\r?")
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte-order mark: skipped at the start of a file


class CorpusError(ValueError):
    """A corpus that cannot be read; the message is one ``file:line: problem`` line."""


class DocumentLayout(str, Enum):
    line = "line"  # one document per non-blank line
    paragraph = "paragraph"  # documents separated by blank lines


class CorpusFormat(str, Enum):
    text = "text"
    ids = "ids"  # ERNIE 1.0's id lines


@dataclass(frozen=True)
class Document:
    sentences: tuple[str, ...]  # in order, each non-empty
    words: tuple[tuple[tuple[str, str], ...], ...] | None = None  # per sentence (word, tag) pairs, when known

    def __post_init__(self) -> None:
        if self.words is not None and len(self.words) != len(self.sentences):
            raise ValueError(f"{len(self.words)} word lists for {len(self.sentences)} sentences")


@dataclass(frozen=True)
class IdRecord:
    """One ERNIE 1.0 training line: ``[CLS] a [SEP] b [SEP]`` as ids of the model's vocabulary."""

    token_ids: tuple[int, ...]
    sentence_type_ids: tuple[int, ...]
    seg_labels: tuple[int, ...]  # 0 starts a word, 1 continues it, -1 [CLS]/[SEP]
    next_sentence_label: int  # 1: b follows a in its document; 0: b is a random sentence


def split_sentences(text: str) -> tuple[str, ...]:
    """Sentences of ``text``, split after 。！？!? (closing quotes kept); blank pieces dropped."""
    return tuple(piece.strip() for piece in _SENTENCE.findall(text) if piece.strip())
