"""The one reader of UTF-8 text input: prediction inputs, task TSVs, corpora, tokenizer sources.

Every text file ernie-tiny reads by line goes through :func:`read_lines`, so all of them
follow the same rules:

- lines end at ``\\n`` only (a ``\\r`` before it is dropped), as ``wc -l`` and editors count
  them, so the number in an error is the line an editor shows;
- a byte-order mark at the start of the file is no text;
- bytes that are not UTF-8 raise :class:`TextFileError` naming ``file:line``;
- blank lines are kept (item i is line i + 1) or skipped, as the caller says.

Torch-free, like everything the serving path imports. Example::

    for line in read_lines("corpus.txt", strip=True, blank=Blank.skip):
        print(line.number, line.text)
    header, rows = read_tsv("lcqmc/dev.tsv")   # rows: [(line number, fields), ...]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class TextFileError(ValueError):
    """A text file that cannot be read: ``file: problem`` or ``file:line: problem``."""


class Blank(str, Enum):
    keep = "keep"  # a blank line is an item (outputs stay aligned with input lines)
    skip = "skip"  # blank lines are left out (corpora)


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, as an editor shows it
    text: str


def check_readable(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path when it is a file; else :class:`TextFileError` saying it is missing or a folder."""
    path = Path(path)
    if path.is_dir():
        raise TextFileError(f"{path}: is a directory, not a text file")
    if not path.is_file():
        raise TextFileError(f"{path}: no such {what}")
    return path


def read_lines(path: str | os.PathLike, *, blank: Blank = Blank.keep, strip: bool = False,
               what: str = "file") -> list[Line]:
    """Every line of a UTF-8 file, in order (``strip``: without surrounding whitespace).

    ``what`` names the file in the missing-file message (``no such corpus file``).
    """
    path = check_readable(path, what)
    raw_lines = path.read_bytes().split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()  # the newline that ends the last line starts no new one
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as err:
            raise TextFileError(f"{path}:{number}: not valid UTF-8 (byte {err.start}: {err.reason}); "
                                f"convert the file to UTF-8 first") from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        if strip:
            text = text.strip()
        if blank is Blank.skip and not text.strip():
            continue
        lines.append(Line(number, text))
    return lines


def read_tsv(path: str | os.PathLike) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and ``(line number, fields)`` of every later line of a TAB-separated file."""
    lines = read_lines(path)
    if not lines:
        raise TextFileError(f"{path}:1: empty file, expected a header line")
    header = [name.strip() for name in lines[0].text.split("\t")]
    return header, [(line.number, line.text.split("\t")) for line in lines[1:]]
