"""Mixed precision: which dtype the forward runs in, and whether the loss is scaled.

    auto  bf16 on a CUDA GPU that supports it, else fp16 with a GradScaler; fp32 on CPU
    fp32  no autocast
    bf16  autocast to bfloat16 (CUDA, or CPU autocast); no loss scaling (bf16 has fp32's range)
    fp16  autocast to float16 with dynamic loss scaling (CUDA only)

The weights and AdamW state stay fp32 in every mode; only the matmuls of the forward
and backward run in the low-precision dtype.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from enum import Enum

import torch


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@dataclass(frozen=True)
class Amp:
    """The resolved precision of a run on one device."""

    device_type: str  # "cpu" or "cuda"
    dtype: torch.dtype | None  # None: full precision

    @classmethod
    def resolve(cls, precision: Precision | str, device: torch.device) -> "Amp":
        """``precision`` on ``device``; refuses what the device cannot run (fp16 on CPU, bf16 on an old GPU)."""
        precision = Precision(precision)
        if precision is Precision.auto:
            if device.type != "cuda":
                return cls(device.type, None)
            precision = Precision.bf16 if torch.cuda.is_bf16_supported() else Precision.fp16
        if precision is Precision.fp32:
            return cls(device.type, None)
        if precision is Precision.fp16 and device.type != "cuda":
            raise ValueError("--precision fp16 needs a CUDA device (loss scaling is CUDA-only); use bf16 on CPU")
        if precision is Precision.bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("--precision bf16: this GPU has no bfloat16 support; use fp16")
        return cls(device.type, torch.bfloat16 if precision is Precision.bf16 else torch.float16)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is enabled only for fp16 (a no-op otherwise)."""
        return torch.amp.GradScaler("cuda" if self.device_type == "cuda" else "cpu",
                                    enabled=self.dtype is torch.float16)
