"""Which head sits on the encoder (a ``str`` Enum), and the label no head predicts; torch-free.

Lives apart from :mod:`ernie_tiny.model` so that the task registry and the
onnxruntime prediction path can name heads without importing torch. Example::

    from ernie_tiny.heads import HeadKind
    HeadKind("ranking") is HeadKind.ranking   # checkpoint and export configs store the value
"""

from __future__ import annotations

from enum import Enum

# The label of every position or row that no head predicts (torch cross_entropy's ignore_index):
# specials, padding, unmasked tokens, augmented copies without a gold label.
IGNORE_INDEX = -100


class HeadKind(str, Enum):
    encoder = "encoder"
    sequence_classification = "sequence_classification"
    token_classification = "token_classification"
    ranking = "ranking"
    masked_lm = "masked_lm"
