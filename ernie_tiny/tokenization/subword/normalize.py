"""Normalise text for the subword tokenizer, remembering which original char each output char came from.

    char -> NFKC -> lower-case -> strip accents -> NFKC
            (full-width "Ａ" -> "A" -> "a"; "É" -> "e"; "İ" -> "i" + U+0307 -> "i"; accents are
             stripped like the ERNIE char tokenizer does when lower-casing: NFD, drop Mn)
    whitespace (any Unicode space, and U+2581 "▁", sentencepiece's own space mark) -> " "
    control / format chars (Cc, Cf: zero-width joiners, BOM) -> dropped
    lone surrogates (Cs, cannot be UTF-8 encoded) -> U+FFFD, an unknown char
    runs of spaces -> one space; no space at either end

With ``nfkc=False`` (the ERNIE-tiny release files, whose sentencepiece model applies NFKC
itself) only the whitespace, control-char and lower-case rules apply.

Each char is normalised alone, so one source char maps to zero, one or several output
chars ("ﬁ" -> "fi", "㍻" -> "平成") and ``origin[i]`` is the index in the ORIGINAL text of
output char ``i``. Token spans are built from ``origin``, never from string offsets of the
normalised text, so they stay exact whatever the normalisation did to lengths.

Example::

    norm = normalize_text("Ｈello  世界")
    norm.text    # 'hello 世界'
    norm.origin  # (0, 1, 2, 3, 4, 5, 7, 8)
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

SPM_SPACE = "\u2581"  # "▁": how sentencepiece writes a space inside pieces


@dataclass(frozen=True)
class NormalizedText:
    """The normalised text and, for each of its chars, the index of the source char."""

    text: str
    origin: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.text) != len(self.origin):
            raise ValueError(f"normalised text has {len(self.text)} chars but {len(self.origin)} origins")


def _normalize_char_uncached(char: str, do_lower_case: bool, nfkc: bool) -> str:
    category = unicodedata.category(char)
    if char.isspace() or category in ("Zs", "Zl", "Zp") or char == SPM_SPACE:
        return " "
    if category == "Cs":
        return "\ufffd"
    if category in ("Cc", "Cf"):
        return ""
    if not nfkc:  # ERNIE-tiny release mode: its sentencepiece model applies NFKC itself
        return char.lower() if do_lower_case else char
    out = unicodedata.normalize("NFKC", char)
    if do_lower_case:
        stripped = "".join(c for c in unicodedata.normalize("NFD", out.lower()) if unicodedata.category(c) != "Mn")
        out = unicodedata.normalize("NFKC", stripped)
    # NFKC can produce spaces or format chars ("¨" -> " " + U+0308): apply the same rules to them.
    if any(c.isspace() or c == SPM_SPACE or unicodedata.category(c) in ("Cc", "Cf", "Zs", "Zl", "Zp") for c in out):
        out = "".join(" " if (c.isspace() or c == SPM_SPACE or unicodedata.category(c).startswith("Z"))
                      else c for c in out if unicodedata.category(c) not in ("Cc", "Cf"))
    return out


# Per-char results, one table per (lower-case, NFKC); Chinese text reuses a few thousand chars.
_CHAR_TABLES: dict[tuple[bool, bool], dict[str, str]] = {(lower, nfkc): {} for lower in (True, False)
                                                          for nfkc in (True, False)}


def normalize_char(char: str, do_lower_case: bool = True, nfkc: bool = True) -> str:
    """The normalised form of one char ("" when it is dropped, " " for any whitespace)."""
    table = _CHAR_TABLES[do_lower_case, nfkc]
    out = table.get(char)
    if out is None:
        out = table[char] = _normalize_char_uncached(char, do_lower_case, nfkc)
    return out


class _OneCharTable(dict):
    """``ord(char) -> normalised char`` for ``str.translate``, filled on first sight of a char.

    A char whose normalised form is not exactly one char (dropped, or several chars) maps to
    :data:`_NOT_ONE_CHAR`, which normalised text never holds (NUL is a control char: dropped).
    """

    def __init__(self, do_lower_case: bool, nfkc: bool):
        super().__init__()
        self.do_lower_case, self.nfkc = do_lower_case, nfkc

    def __missing__(self, code: int) -> str:
        out = normalize_char(chr(code), self.do_lower_case, self.nfkc)
        value = self[code] = out if len(out) == 1 else _NOT_ONE_CHAR
        return value


_NOT_ONE_CHAR = "\x00"
_ONE_CHAR_TABLES = {key: _OneCharTable(*key) for key in _CHAR_TABLES}


def normalize_one_to_one(text: str, do_lower_case: bool = True, nfkc: bool = True) -> str | None:
    """The normalised ``text`` when each source char became exactly one char (so ``origin`` is
    ``0, 1, 2, ...``), else None. One ``str.translate`` in C: the common case of :func:`normalize_text`."""
    out = text.translate(_ONE_CHAR_TABLES[do_lower_case, nfkc])
    if _NOT_ONE_CHAR in out or (" " in out and (out[0] == " " or out[-1] == " " or "  " in out)):
        return None  # a dropped or expanded char, or spaces to trim or collapse: the general loop
    return out


def normalize_text(text: str, do_lower_case: bool = True, nfkc: bool = True) -> NormalizedText:
    """Normalise ``text`` (see the module docstring) and keep the source index of every output char.

    ``nfkc=False`` only maps whitespace, drops control chars and lower-cases (the release's
    sentencepiece model normalises with NFKC itself, after segmentation).
    """
    one_to_one = normalize_one_to_one(text, do_lower_case, nfkc)
    if one_to_one is not None:
        return NormalizedText(one_to_one, tuple(range(len(one_to_one))))
    return normalize_text_by_char(text, do_lower_case, nfkc)


def normalize_text_by_char(text: str, do_lower_case: bool = True, nfkc: bool = True) -> NormalizedText:
    """:func:`normalize_text` char by char: the general case, and the reference of the fast one."""
    table = _CHAR_TABLES[do_lower_case, nfkc]
    chars: list[str] = []
    origin: list[int] = []
    pending_space = -1  # index of the first source char of a whitespace run not yet written
    for index, char in enumerate(text):
        out = table.get(char)
        if out is None:
            out = normalize_char(char, do_lower_case, nfkc)
        if out == " ":
            if pending_space < 0:
                pending_space = index
            continue
        for piece_char in out:
            if piece_char == " ":
                if pending_space < 0:
                    pending_space = index
                continue
            if pending_space >= 0:
                if chars:  # no space at the start
                    chars.append(" ")
                    origin.append(pending_space)
                pending_space = -1
            chars.append(piece_char)
            origin.append(index)
    return NormalizedText("".join(chars), tuple(origin))
