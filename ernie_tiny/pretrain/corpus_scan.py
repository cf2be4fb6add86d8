"""Scanning a corpus file once, in 4 MB numpy chunks: one byte offset per document, UTF-8 and id lines checked.

The readers in :mod:`ernie_tiny.pretrain.corpus` keep what :func:`scan` returns and seek to a
document's offset; a bad file stops here with one ``file:line: problem`` (:class:`CorpusError`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ernie_tiny.pretrain.documents import BOM, ID_FIELDS, CorpusError, CorpusFormat, DocumentLayout

CHUNK_BYTES = 4 << 20  # scan unit; temporaries are a few times this, whatever the file size

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


def scan(path: Path, source: str, layout: DocumentLayout, fmt: CorpusFormat) -> tuple[np.ndarray, str]:
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


def line_number(path: Path, offset: int) -> int:
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
