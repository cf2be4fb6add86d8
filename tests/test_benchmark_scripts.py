"""The benchmark scripts' own helpers: live row progress of distill_quality."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_row_progress_reads_the_last_train_line_even_while_one_is_being_written(tmp_path):
    quality = load_script("distill_quality")
    assert quality.row_progress(tmp_path) == (0, None)  # the row has not logged yet
    lines = [json.dumps({"step": 10, "split": "train", "loss": 0.9}), json.dumps({"step": 10, "split": "dev"}),
             json.dumps({"step": 20, "split": "train", "loss": 0.5}), '{"step": 30, "spl']  # a half-written line
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines), encoding="utf-8")
    assert quality.row_progress(tmp_path) == (20, 0.5)
    assert quality.row_steps({"stage": "both", "steps_intermediate": 100, "steps_prediction": 200}) == 300
    assert quality.row_steps({"stage": "joint", "steps_intermediate": 100, "steps_prediction": 200}) == 200
