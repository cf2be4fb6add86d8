"""Deprecated import path, kept for one release: use :mod:`ernie_tiny.tokenization.batching`."""

from ernie_tiny.tokenization.batching import Batch, pad_encodings

__all__ = ["Batch", "pad_encodings"]
