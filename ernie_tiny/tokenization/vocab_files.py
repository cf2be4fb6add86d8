"""Reading ``vocab.txt`` files: the lines, then ``token -> id`` with every problem as ``file:line: problem``.

Shared by the char (teacher) and subword (student) tokenizers, which keep their own
id rules: the subword reader keeps a line's first TAB field and numbers tokens by
line, the char reader also accepts ERNIE 1.0's ``token<TAB>id`` lines. Torch-free,
like every tokenizer module. Example::

    lines = read_vocab_lines("vocab.txt")
    vocab = index_vocab(((line, number) for number, line in enumerate(lines)), "vocab.txt")  # id = line - 1
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

VOCAB_FILE = "vocab.txt"  # the token list of every tokenizer folder
TOKENIZER_CONFIG = "tokenizer_config.json"  # its settings, with the "kind" load_tokenizer dispatches on


def split_lines(text: str) -> list[str]:
    """``text`` cut at ``\\n``, ``\\r\\n`` and ``\\r``: the universal newlines of ``open()`` in text mode."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def read_vocab_lines(path: str | os.PathLike, error: type[ValueError] = ValueError) -> list[str]:
    """The lines of a UTF-8 vocabulary file without their line ends (a final newline adds no line).

    Missing files and bad UTF-8 raise ``error`` naming the file (and the line of the bad byte).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such vocabulary file")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = len(split_lines(data[:err.start].decode("utf-8")))  # the bytes before the bad one are valid
        raise error(f"{path}:{line_no}: not valid UTF-8 (file byte {err.start}: {err.reason})") from None
    lines = split_lines(text)
    if lines[-1] == "":
        lines.pop()  # the final newline
    return lines


def index_vocab(entries: Iterable[tuple[str, int]], path: str | os.PathLike,
                error: type[ValueError] = ValueError) -> dict[str, int]:
    """``token -> id`` from ``(token, id)`` pairs, one per file line in order (``path`` names it in errors).

    An empty token or one seen on an earlier line raises ``error`` with ``file:line``. ``entries`` is
    consumed lazily, so a caller's own per-line errors keep file order with these.
    """
    path = Path(path)
    vocab: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for line_no, (token, index) in enumerate(entries, start=1):
        if not token:
            raise error(f"{path}:{line_no}: empty token")
        if token in vocab:
            raise error(f"{path}:{line_no}: token {token!r} repeats line {first_line[token]}")
        vocab[token] = index
        first_line[token] = line_no
    return vocab
