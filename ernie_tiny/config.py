"""The typed configs' shared base: read a saved config back strictly. Torch-free (masking imports it).

Every typed config (``OptimConfig``, ``FinetuneConfig``, ``MaskingConfig``, ...) is a dataclass that
mixes in :class:`StrictConfig`, so a config read back from a checkpoint or a file names any key
it does not know instead of silently dropping it. Example::

    MaskingConfig.from_dict({"mask_rate": 0.15})   # MaskingConfig(mask_rate=0.15, ...)
    MaskingConfig.from_dict({"mask_ratio": 0.15})  # ValueError: unknown MaskingConfig fields: mask_ratio
"""

from __future__ import annotations

import dataclasses


def strict_config(cls: type, values: dict):
    """``cls(**values)``, refusing unknown keys by name (a config read back from a checkpoint or a file)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    return cls(**values)


class StrictConfig:
    """Mixin of the typed configs: ``from_dict`` reads a saved config strictly (see :func:`strict_config`)."""

    @classmethod
    def from_dict(cls, values: dict):
        return strict_config(cls, values)
