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


def check_run_start(config: object) -> None:
    """A trainer config's ``resume`` and ``overwrite`` exclude each other (both say what to do with ``out_dir``)."""
    if getattr(config, "resume", False) and getattr(config, "overwrite", False):
        raise ValueError("--resume and --overwrite exclude each other")


def check_model_start(config: object, presets: dict) -> None:
    """A trainer that builds its model: :func:`check_run_start`, and exactly one of a known ``preset`` or ``init``."""
    check_run_start(config)
    preset, init = getattr(config, "preset"), getattr(config, "init")
    if (preset is None) == (init is None):
        raise ValueError("give exactly one of --preset (random init) and --init (a checkpoint)")
    if preset is not None and preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; known presets: {', '.join(presets)}")
