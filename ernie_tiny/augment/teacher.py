"""The teacher's two jobs in augmentation: masked-LM candidates for Chinese words, soft labels.

:class:`TeacherMaskedLM` answers :class:`~ernie_tiny.augment.mlm.MaskedWordQuery`
with an ``ErnieForMaskedLM`` and its char tokenizer (method in
:mod:`ernie_tiny.augment.mlm`). :func:`label_with_teacher` gives augmented text,
which has no gold label, the fine-tuned teacher's logits as its target (ERNIE Slim's
step 2, TinyBERT's task distillation).

Example::

    mlm = TeacherMaskedLM.from_pretrained("checkpoints/ernie-1.0-mlm", top_k=15)
    new = augment_examples(train, AugmentConfig(p_mlm=0.1), mlm=mlm)
    loaded = load_pretrained("checkpoints/teacher")
    logits = label_with_teacher(loaded.model, loaded.tokenizer, [e.pair for e in new])   # (N, C)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ernie_tiny.tokenization.batching import pad_encodings
from ernie_tiny.checkpoint import load_pretrained
from ernie_tiny.augment.mlm import MaskedWordQuery, top_words
from ernie_tiny.tokenization.encoding import MASK, Tokenizer
from ernie_tiny.model import HeadKind
from ernie_tiny.tokenization.char import is_cjk


class TeacherMaskedLM:
    """:class:`MaskedWordPredictor` from an ``ErnieForMaskedLM`` and its char tokenizer."""

    def __init__(self, model: nn.Module, tokenizer: Tokenizer, top_k: int = 15, batch_size: int = 32,
                 max_len: int = 128, context_chars: int = 32, device: str | torch.device = "cpu"):
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if context_chars < 0:
            raise ValueError(f"context_chars must be >= 0, got {context_chars}")
        if getattr(model, "head_kind", None) is not HeadKind.masked_lm:
            raise ValueError(f"the MLM strategy needs a masked-LM model, got head {getattr(model, 'head_kind', None)}")
        vocab = getattr(tokenizer, "vocab", None)
        if not isinstance(vocab, dict) or MASK not in vocab:
            raise ValueError("the MLM strategy needs a tokenizer with a `vocab` dict holding [MASK] "
                             "(the char tokenizer of ernie_tiny.tokenization.char)")
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.top_k, self.batch_size, self.max_len, self.device = top_k, batch_size, max_len, device
        # The model sees the word with this many chars each side: one forward per word is the
        # whole cost, and it grows with the sequence length; also reaches words past max_len.
        self.context_chars = context_chars
        self.mask_id = vocab[MASK]
        self.id_to_token = {index: token for token, index in vocab.items()}
        vocab_size = model.ernie.config.vocab_size
        allowed = torch.zeros(vocab_size, dtype=torch.bool)  # (V,) single CJK chars only
        for token, index in vocab.items():
            if index < vocab_size and len(token) == 1 and is_cjk(token):
                allowed[index] = True
        self.allowed = allowed.to(device)
        self.cache: dict[MaskedWordQuery, list[str]] = {}

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, top_k: int = 15, batch_size: int = 32,
                        max_len: int = 128, context_chars: int = 32,
                        device: str | torch.device = "cpu") -> "TeacherMaskedLM":
        """Load a checkpoint folder whose head is ``masked_lm`` and whose tokenizer is char-level."""
        loaded = load_pretrained(directory, map_location=device)
        if loaded.meta.head is not HeadKind.masked_lm:
            raise ValueError(f"{directory}: head is {loaded.meta.head.value}, the MLM strategy needs a "
                             f"masked_lm checkpoint (a pre-trained ERNIE with its MLM head)")
        if loaded.tokenizer is None or loaded.tokenizer.kind != "char":
            raise ValueError(f"{directory}: the MLM strategy needs a char tokenizer (one [MASK] per character)")
        return cls(loaded.model, loaded.tokenizer, top_k=top_k, batch_size=batch_size, max_len=max_len,
                   context_chars=context_chars, device=device)

    def _masked_input(self, query: MaskedWordQuery) -> "_MaskedInput | None":
        """The word's window of text with the word's characters masked, or None when the word is
        not one token per character (cut by truncation, or a tokenizer that is not char-level)."""
        left = max(0, query.start - self.context_chars)
        window = query.text[left:query.end + self.context_chars]
        start, end = query.start - left, query.end - left
        encoding = self.tokenizer.encode(window, None, max_len=self.max_len)
        positions = [i for i, span in enumerate(encoding.spans)
                     if span.text_index == 0 and start <= span.start and span.end <= end]
        spans = [(encoding.spans[i].start, encoding.spans[i].end) for i in positions]
        if spans != [(c, c + 1) for c in range(start, end)]:
            return None
        input_ids = list(encoding.input_ids)
        for i in positions:
            input_ids[i] = self.mask_id
        return _MaskedInput(query, input_ids, list(encoding.token_type_ids), positions)

    @torch.inference_mode()
    def predict(self, queries: Sequence[MaskedWordQuery]) -> list[list[str]]:
        """Up to ``top_k`` replacement words per query, best first (cached per query)."""
        prepared = []
        for query in dict.fromkeys(queries):
            if query in self.cache:
                continue
            masked = self._masked_input(query)
            if masked is None:
                self.cache[query] = []
            else:
                prepared.append(masked)
        prepared.sort(key=lambda item: len(item.input_ids))  # similar lengths per batch: little padding
        for begin in range(0, len(prepared), self.batch_size):
            self._predict_batch(prepared[begin:begin + self.batch_size])
        return [list(self.cache[q]) for q in queries]

    def _predict_batch(self, items: list["_MaskedInput"]) -> None:
        width = max(len(item.input_ids) for item in items)
        input_ids = torch.full((len(items), width), self.tokenizer.pad_id, dtype=torch.long)  # (B, T)
        token_type_ids = torch.zeros((len(items), width), dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros((len(items), width), dtype=torch.long)  # (B, T)
        for row, item in enumerate(items):
            n = len(item.input_ids)
            input_ids[row, :n] = torch.tensor(item.input_ids)
            token_type_ids[row, :n] = torch.tensor(item.token_type_ids)
            attention_mask[row, :n] = 1
        logits = self.model(input_ids=input_ids.to(self.device), token_type_ids=token_type_ids.to(self.device),
                            attention_mask=attention_mask.to(self.device)).logits  # (B, T, V)
        beam = self.top_k + 1  # one more: the original word may be among the best
        k = min(beam, int(self.allowed.sum()))
        for row, item in enumerate(items):
            log_probs = torch.log_softmax(logits[row, item.positions].float(), dim=-1)  # (n, V)
            log_probs = log_probs.masked_fill(~self.allowed, float("-inf"))
            best, best_ids = log_probs.topk(k, dim=-1)  # (n, k)
            ranked = top_words(best.tolist(), best_ids.tolist(), beam)
            words = ["".join(self.id_to_token[i] for i in ids) for _, ids in ranked]
            self.cache[item.query] = [w for w in words if w != item.query.word][:self.top_k]


@dataclass
class _MaskedInput:
    query: MaskedWordQuery
    input_ids: list[int]  # the text's ids with the word's positions set to [MASK]
    token_type_ids: list[int]
    positions: list[int]  # token positions of the masked characters, in text order


def label_with_teacher(model: nn.Module, tokenizer: Tokenizer, pairs: Sequence[tuple[str, str | None]],
                       batch_size: int = 64, max_len: int = 128, device: str | torch.device | None = None,
                       progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The teacher's logits for every ``(text_a, text_b)``, float32 (N, C), in input order.

    The model runs in eval mode (no dropout) under ``torch.inference_mode``; examples are
    sorted by length and each batch is padded to its own longest example (dynamic padding).
    A ranking head's (B,) scores come back as (N, 1). Token-level heads are refused: the
    augmentations change the characters their labels would have to follow.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is None:
        device = next(model.parameters()).device
    encodings = tokenizer.encode_batch(list(pairs), max_len=max_len)
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i]))
    outputs: list[np.ndarray | None] = [None] * len(encodings)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for begin in range(0, len(order), batch_size):
                rows = order[begin:begin + batch_size]
                batch = pad_encodings([encodings[i] for i in rows], pad_id=tokenizer.pad_id).to(device)
                logits = model(input_ids=batch.input_ids, token_type_ids=batch.token_type_ids,
                               attention_mask=batch.attention_mask).logits
                if logits.dim() == 1:
                    logits = logits.unsqueeze(-1)  # ranking scores (B,) -> (B, 1)
                if logits.dim() != 2:
                    raise ValueError(f"teacher logits have shape {tuple(logits.shape)}; soft labels for "
                                     f"augmented examples need one vector per example (a sentence or pair head)")
                for row, values in zip(rows, logits.float().cpu().numpy()):
                    outputs[row] = values
                if progress is not None:
                    progress(min(begin + batch_size, len(order)), len(order))
    finally:
        model.train(was_training)
    if not outputs:
        width = 1 if getattr(model, "head_kind", None) is HeadKind.ranking else int(getattr(model, "num_labels", 1))
        return np.zeros((0, width), dtype=np.float32)
    return np.stack(outputs).astype(np.float32)
