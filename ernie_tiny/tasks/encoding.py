"""Examples to token ids and back: encoding with labels aligned to tokens, predictions from outputs.

A NER label is one tag per character; a token learns the tag of its first character
(:func:`align_tags_to_tokens`), and predictions go back to characters with
:func:`char_tags_from_token_tags`, which the torch-free predictor shares. Example::

    encoded = encode_examples(train, tokenizer, max_len=128)   # encoded.truncated: how many were cut
    predictions = predictions_from_outputs(task, outputs, encoded, train)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ernie_tiny.heads import IGNORE_INDEX
from ernie_tiny.tasks.registry import Example, TaskKind, TaskSpec
from ernie_tiny.tokenization.encoding import Encoding, Tokenizer


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
