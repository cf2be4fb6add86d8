"""Task-independent metrics on plain sequences: MRR for ranking, BIO entities and entity-level F1.

Torch- and sklearn-free, shared by :func:`ernie_tiny.tasks.evaluate` and the onnxruntime
predictor (which reports entities). Example::

    bio_entities(["B-PER", "I-PER", "O", "B-LOC"])   # {("PER", 0, 2), ("LOC", 3, 4)}
    entity_f1([["B-PER", "I-PER"]], [["B-PER", "O"]])  # {"f1": 0.0, "precision": 0.0, "recall": 0.0}
    mean_reciprocal_rank(["q1", "q1"], [0, 1], [0.9, 0.2])  # 0.5
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ernie_tiny.tasks.registry import Example, TaskKind, TaskSpec, get_task



def mean_reciprocal_rank(qids: Sequence[str], gold: Sequence[int], scores: Sequence[float]) -> float:
    """Mean over queries of 1 / rank of the first relevant answer by descending score.

    As ERNIE's DBQA evaluation: every query counts, one with no relevant answer adds 0.
    Ties keep file order.
    """
    by_query: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for qid, label, score in zip(qids, gold, scores):
        by_query[qid].append((score, label))
    total = 0.0
    for answers in by_query.values():
        ranked = sorted(answers, key=lambda pair: -pair[0])  # stable: ties keep file order
        total += next((1.0 / rank for rank, (_, label) in enumerate(ranked, start=1) if label > 0), 0.0)
    return total / len(by_query)


def bio_entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entity spans ``(type, start, end)`` of a BIO tag sequence, ``end`` exclusive.

    conlleval rules: B-X starts an entity, I-X continues one of type X, and an I-X
    that follows O or another type starts a new entity (seqeval's default mode).
    """
    entities, kind, start = set(), None, 0
    for position, tag in enumerate(list(tags) + ["O"]):
        prefix, tag_kind = (tag[:1], tag[2:]) if tag != "O" else ("O", None)
        continues = prefix == "I" and tag_kind == kind
        if kind is not None and not continues:
            entities.add((kind, start, position))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = tag_kind, position
    return entities


def entity_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 over exact (type, start, end) entity matches."""
    n_gold = n_pred = n_correct = 0
    for gold_tags, pred_tags in zip(gold, predicted, strict=True):
        gold_entities, pred_entities = bio_entities(gold_tags), bio_entities(pred_tags)
        n_gold, n_pred = n_gold + len(gold_entities), n_pred + len(pred_entities)
        n_correct += len(gold_entities & pred_entities)
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


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
