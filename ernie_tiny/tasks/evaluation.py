"""Task metrics of a model on a split, the same on one process or many."""

from __future__ import annotations

from functools import partial

import numpy as np
from torch import nn

from ernie_tiny.tasks.batches import collate
from ernie_tiny.tasks import EncodedSplit, Example, TaskSpec, encode_examples, evaluate, predictions_from_outputs
from ernie_tiny.tokenization.encoding import Tokenizer
from ernie_tiny.training.distributed import DistributedContext, all_gather_objects
from ernie_tiny.training.inference import predict


class SplitEvaluator:
    """Task metrics of a model on ``dev``/``test``; under torchrun each process predicts every N-th example.

    Encodings are computed once per (tokenizer, split). Every process must call it (the
    outputs are gathered), and every process gets the same metrics back.
    """

    def __init__(self, task: TaskSpec, examples: dict[str, list[Example]], max_len: int, batch_size: int,
                 ctx: DistributedContext):
        self.task, self.examples, self.max_len, self.batch_size, self.ctx = task, examples, max_len, batch_size, ctx
        self._encoded: dict[tuple[int, str], EncodedSplit] = {}

    def add_encoded(self, tokenizer: Tokenizer, encoded: dict[str, EncodedSplit]) -> None:
        """Reuse splits the caller already encoded with ``tokenizer`` (and this ``max_len``)."""
        for split, encoded_split in encoded.items():
            self._encoded[(id(tokenizer), split)] = encoded_split

    def encoded(self, tokenizer: Tokenizer, split: str) -> EncodedSplit:
        key = (id(tokenizer), split)
        if key not in self._encoded:
            self._encoded[key] = encode_examples(self.examples[split], tokenizer, self.max_len)
        return self._encoded[key]

    def __call__(self, model: nn.Module, tokenizer: Tokenizer, split: str) -> dict[str, float]:
        encoded = self.encoded(tokenizer, split)
        positions = list(range(self.ctx.rank, len(encoded.items), self.ctx.world_size))
        collate_fn = partial(collate, self.task, pad_id=tokenizer.pad_id)
        outputs = predict(model, [encoded.items[i] for i in positions], collate_fn, self.batch_size, self.ctx.device) \
            if positions else []
        ordered: list[np.ndarray | None] = [None] * len(encoded.items)
        for part in all_gather_objects(list(zip(positions, outputs)), self.ctx):
            for position, output in part:
                ordered[position] = output
        predictions = predictions_from_outputs(self.task, ordered, encoded, self.examples[split])
        return evaluate(self.task, predictions, self.examples[split])
