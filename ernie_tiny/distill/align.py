"""Align a char-level teacher's tokens with a subword student's tokens of the same text.

TinyBERT and TextBrewer compare teacher position i with student position i, so both
models must share a tokenizer. Here every token carries its character span
(:class:`ernie_tiny.tokenization.encoding.TokenSpan`), and student token i is matched with the
teacher tokens whose spans lie inside its span. The match is stored compactly as a
range of teacher positions per student position (teacher tokens of one text are in
text order, so the tokens inside a span are contiguous):

    cover[i, j] = 1 if teacher_start[i] <= j < teacher_end[i] and valid[i], else 0   (S, T)
    pool[i, j]  = cover[i, j] / sum_j' cover[i, j']                                   (S, T)

Rules for student token i (``build_alignment``):

- Special tokens match by span: student [CLS] (span (-1, 0)) <-> teacher [CLS], first
  [SEP] (-1, 1) <-> first [SEP], second [SEP] (-1, 2) <-> second [SEP].
- Otherwise the teacher tokens are those inside student span [start, end) of the same text.
  The row is *valid* only if
  (a) there is at least one such teacher token (none when the teacher was truncated earlier),
  (b) no teacher token straddles the span boundary: teacher WordPiece "hello" vs student
      pieces "he" + "llo" makes both student rows invalid. We do not merge the two
      student rows onto one teacher token: the loss would then ask two different
      student positions to both equal one teacher vector, which is a mismatch, not an
      alignment;
  (c) every character of the span the teacher tokens leave uncovered is whitespace. With
      ``texts`` given, "whitespace" is ``str.isspace``. Without texts, an uncovered
      char counts as whitespace when the teacher has a token after it in the same text
      (a char tokenizer only drops whitespace/control chars between tokens; chars after
      its last token were truncated away);
  (d) neither the student token nor any of its teacher tokens is [UNK] (an [UNK]
      teacher state says nothing about the char the student sees).
- Invalid rows are all zero in ``pool`` and ``cover`` and are masked out of every loss.

Apply an :class:`AlignedBatch` to teacher tensors:

    align_hidden:            H_s = pool @ H_t                         (B, S, H)   mean over the span
    align_attention_probs:   A   = pool @ P_t @ cover^T               (B, h, S, S)
        rows averaged over a student token's query chars, columns summed over its key chars,
        so each row of A is still a (sub-)distribution over student keys.
    align_token_logits:      Z_s[i] = Z_t[first teacher token of student token i]   (B, S, C)
        token-level soft targets (NER): the first char of a token carries its tag, as in
        ``tasks.align_tags_to_tokens``; for a char student it is the char itself.

The attention losses themselves (:func:`ernie_tiny.distill.losses.aligned_attention_loss`)
renormalise A over valid student keys before comparing it with the student's attention.

Usage (one alignment per example, computed once; collated per batch)::

    alignments = [build_alignment(s, t, texts=pair) for s, t, pair in zip(student_encs, teacher_encs, pairs)]
    aligned = collate_alignments([alignments[i] for i in batch_ids], student_len=S, teacher_len=T)
    teacher_hidden_at_student = align_hidden(teacher_out.hidden_states[4], aligned.pool)  # (B, S, H_t)

When teacher and student share a tokenizer use ``identity_alignment(encoding)``
(:func:`ernie_tiny.distill.data.build_items` computes one alignment per item either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ernie_tiny.tokenization.encoding import Encoding


@dataclass(frozen=True)
class Alignment:
    """Student token i pools teacher tokens ``teacher_start[i]:teacher_end[i]`` (all arrays (S,))."""

    teacher_start: np.ndarray  # (S,) int64
    teacher_end: np.ndarray  # (S,) int64, == teacher_start where invalid
    valid: np.ndarray  # (S,) bool
    teacher_length: int  # T: number of teacher tokens

    @property
    def student_length(self) -> int:
        return len(self.valid)

    @property
    def cover(self) -> np.ndarray:
        """(S, T) float32: 1 where teacher token j lies in valid student token i."""
        columns = np.arange(self.teacher_length)[None, :]  # (1, T)
        inside = (columns >= self.teacher_start[:, None]) & (columns < self.teacher_end[:, None])  # (S, T)
        return (inside & self.valid[:, None]).astype(np.float32)

    @property
    def pool(self) -> np.ndarray:
        """(S, T) float32: cover with each valid row divided by its count (rows sum to 1 or are 0)."""
        cover = self.cover
        return cover / np.maximum(cover.sum(axis=1, keepdims=True), 1.0)


@dataclass
class AlignedBatch:
    """Padded alignment tensors for a batch; padding rows/columns are zero and invalid."""

    pool: torch.Tensor  # (B, S, T) float
    cover: torch.Tensor  # (B, S, T) float
    valid: torch.Tensor  # (B, S) bool

    def to(self, device: torch.device | str) -> "AlignedBatch":
        return AlignedBatch(self.pool.to(device), self.cover.to(device), self.valid.to(device))


def _teacher_index(teacher: Encoding) -> tuple[dict[int, int], dict[int, list[int]], dict[int, int]]:
    """Specials by number, per-text char -> teacher token owner (-1 if none), per-text end of the last token."""
    specials: dict[int, int] = {}
    owners: dict[int, list[int]] = {}
    last_end: dict[int, int] = {}
    for j, span in enumerate(teacher.spans):
        if span.is_special:
            specials[span.start] = j
            continue
        owner = owners.setdefault(span.text_index, [])
        if span.start < last_end.get(span.text_index, 0) or span.end < span.start:
            raise ValueError(f"teacher token {j} {teacher.tokens[j]!r} span ({span.start}, {span.end}) of text "
                             f"{span.text_index} overlaps or precedes the previous token: spans must be in text order")
        if len(owner) < span.end:
            owner.extend([-1] * (span.end - len(owner)))
        owner[span.start:span.end] = [j] * (span.end - span.start)
        last_end[span.text_index] = span.end
    return specials, owners, last_end


def build_alignment(student: Encoding, teacher: Encoding, texts: Sequence[str | None] | None = None) -> Alignment:
    """Align one student encoding with the teacher encoding of the same text(s); O(S + T + chars).

    ``texts`` (optional): the input texts ``(text_a, text_b)``, used only to tell which
    uncovered chars are whitespace (rule (c) in the module docstring).
    """
    specials, owners, last_end = _teacher_index(teacher)
    text_count = 1 + max((span.text_index for span in student.spans), default=-1)
    if texts is not None and len(texts) < text_count:
        raise ValueError(f"student encoding has tokens of {text_count} texts but {len(texts)} texts were given")
    n = len(student)
    starts = np.zeros(n, dtype=np.int64)
    ends = np.zeros(n, dtype=np.int64)
    valid = np.zeros(n, dtype=bool)
    for i, span in enumerate(student.spans):
        if span.is_special:
            j = specials.get(span.start)
            if j is not None:
                starts[i], ends[i], valid[i] = j, j + 1, True
            continue
        if student.unk_mask[i]:
            continue
        owner = owners.get(span.text_index, [])
        first = last = -1
        aligned = True
        for char in range(span.start, span.end):
            j = owner[char] if char < len(owner) else -1
            if j < 0:
                if texts is not None:
                    text = texts[span.text_index] or ""
                    dropped_whitespace = char < len(text) and text[char].isspace()
                else:
                    dropped_whitespace = char < last_end.get(span.text_index, 0)
                aligned = aligned and dropped_whitespace
                continue
            first = j if first < 0 else first
            last = j
        if not aligned or first < 0:
            continue
        # Tokens first..last are in text order, so only the two ends can straddle the span.
        if teacher.spans[first].start < span.start or teacher.spans[last].end > span.end:
            continue
        if any(teacher.unk_mask[first:last + 1]):
            continue
        starts[i], ends[i], valid[i] = first, last + 1, True
    ends[~valid] = starts[~valid]
    return Alignment(starts, ends, valid, len(teacher))


def identity_alignment(encoding: Encoding) -> Alignment:
    """Teacher and student share a tokenizer: position i <-> i, [UNK] positions invalid."""
    n = len(encoding)
    valid = ~np.asarray(encoding.unk_mask, dtype=bool)
    starts = np.arange(n, dtype=np.int64)
    return Alignment(starts, np.where(valid, starts + 1, starts), valid, n)


def collate_alignments(alignments: Sequence[Alignment], student_len: int | None = None,
                       teacher_len: int | None = None) -> AlignedBatch:
    """Pad per-example alignments to (B, S, T) tensors.

    Widths default to the longest example. A student position at or past ``student_len``
    is dropped; one whose teacher tokens reach past ``teacher_len`` (padding cut them off)
    becomes invalid.
    """
    if not alignments:
        raise ValueError("collate_alignments needs at least one alignment")
    S = max(a.student_length for a in alignments) if student_len is None else student_len
    T = max(a.teacher_length for a in alignments) if teacher_len is None else teacher_len
    starts = np.zeros((len(alignments), S), dtype=np.int64)
    ends = np.zeros((len(alignments), S), dtype=np.int64)
    valid = np.zeros((len(alignments), S), dtype=bool)
    for row, a in enumerate(alignments):
        n = min(a.student_length, S)
        starts[row, :n], ends[row, :n], valid[row, :n] = a.teacher_start[:n], a.teacher_end[:n], a.valid[:n]
    valid &= ends <= T
    starts_t, ends_t, valid_t = torch.from_numpy(starts), torch.from_numpy(ends), torch.from_numpy(valid)
    columns = torch.arange(T)  # (T,)
    inside = (columns >= starts_t[..., None]) & (columns < ends_t[..., None]) & valid_t[..., None]  # (B, S, T)
    cover = inside.float()
    pool = cover / cover.sum(dim=-1, keepdim=True).clamp(min=1.0)
    return AlignedBatch(pool=pool, cover=cover, valid=valid_t)


def align_hidden(teacher_hidden: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Teacher hidden states at student positions: ``pool @ teacher_hidden`` -> (B, S, H).

    teacher_hidden (B, T, H), pool (B, S, T). Invalid rows come out as zero vectors.
    """
    return pool.to(teacher_hidden.device, teacher_hidden.dtype) @ teacher_hidden  # (B, S, H)


def align_attention_probs(teacher_probs: torch.Tensor, pool: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """Teacher attention at student resolution: ``A = pool @ P @ cover^T`` -> (B, h, S, S).

    teacher_probs (B, h, T, T) rows summing to 1 over real keys; pool, cover (B, S, T).
    A[b, :, i, j] = mean over query chars q of token i of sum over key chars k of token j of P[q, k].
    """
    pool = pool.to(teacher_probs.device, teacher_probs.dtype)[:, None]  # (B, 1, S, T)
    cover_t = cover.to(teacher_probs.device, teacher_probs.dtype).transpose(-1, -2)[:, None]  # (B, 1, T, S)
    return pool @ teacher_probs @ cover_t  # (B, h, S, S)


def masked_softmax(scores: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim of scores (B, h, Q, K) with keys where key_mask (B, K) is 0 excluded.

    A row with no allowed key is all zero (not NaN).
    """
    allowed = key_mask.bool()[:, None, None, :]  # (B, 1, 1, K)
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    return torch.nan_to_num(probs, nan=0.0)


def align_token_logits(teacher_logits: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """Teacher token logits at student positions: each student token takes its first teacher token's row.

    Z_s[b, i] = Z_t[b, j_i],   j_i = min { j : cover[b, i, j] = 1 }   (0 for an invalid row: mask it)
    teacher_logits (B, T, C); cover (B, S, T) -> (B, S, C). For a char student on the
    teacher's vocabulary the alignment is the identity and this returns ``teacher_logits``.
    The first char, not a mean over the span: a token's tag is its first char's tag.
    """
    first = cover.to(teacher_logits.device).argmax(dim=-1)  # (B, S): argmax returns the first maximal index
    index = first[..., None].expand(-1, -1, teacher_logits.shape[-1])  # (B, S, C)
    return teacher_logits.gather(1, index)
