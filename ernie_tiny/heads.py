"""Which head sits on the encoder: a ``str`` Enum shared by torch and torch-free code.

Lives apart from :mod:`ernie_tiny.model` so that the task registry and the
onnxruntime prediction path can name heads without importing torch. Example::

    from ernie_tiny.heads import HeadKind
    HeadKind("ranking") is HeadKind.ranking   # checkpoint and export configs store the value
"""

from __future__ import annotations

from enum import Enum


class HeadKind(str, Enum):
    encoder = "encoder"
    sequence_classification = "sequence_classification"
    token_classification = "token_classification"
    ranking = "ranking"
    masked_lm = "masked_lm"
