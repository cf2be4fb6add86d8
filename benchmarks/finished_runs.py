"""Reuse a finished benchmark cell: its ``metrics.json``, and whether it ran with the settings asked for.

Every resumable benchmark script (``pretrained_pipeline``, ``pretrained_students``,
``distill_quality``) keeps one run per folder; a folder whose ``metrics.json`` exists holds a
finished run, and its saved ``config`` says how it ran. Usage::

    metrics = finished_metrics(out_dir)
    if metrics is not None and settings_difference(wanted, metrics["config"]) is None:
        ...  # reuse it instead of running again
"""

from __future__ import annotations

import json
from pathlib import Path

METRICS_FILE = "metrics.json"


def finished_metrics(out_dir: str | Path) -> dict | None:
    """The ``metrics.json`` of the run finished in ``out_dir``; None when none finished there."""
    path = Path(out_dir) / METRICS_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def settings_difference(wanted: dict, saved: dict, not_compared: tuple[str, ...] = ("out_dir",),
                        prefix: str = "") -> str | None:
    """The first field of ``wanted`` that ``saved`` holds differently (``optim.lr: ran with 0.001, now 0.0005``).

    Nested blocks compare only the fields given (a saved config also holds the defaults); keys in
    ``not_compared`` are skipped (the folder may have been renamed). None when everything matches.
    """
    for key, value in wanted.items():
        if key in not_compared:
            continue
        have = saved.get(key)
        if isinstance(value, dict) and isinstance(have, dict):
            difference = settings_difference(value, have, not_compared, f"{prefix}{key}.")
            if difference:
                return difference
        elif have != value:
            return f"{prefix}{key}: ran with {have!r}, now {value!r}"
    return None
