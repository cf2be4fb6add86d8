"""benchmarks/train_speed.py: the commands it runs for each preset and the numbers it reads back."""

from __future__ import annotations

import json

from benchmark_script import load_script


def test_window_means_leave_out_the_warm_up_windows(tmp_path):
    speed = load_script("train_speed")
    lines = [{"step": 10, "split": "train", "examples_per_s": 100.0, "tflops": 1.0, "data_wait": 0.5},
             {"step": 20, "split": "train", "examples_per_s": 3000.0, "tflops": 40.0, "data_wait": 0.0},
             {"step": 20, "split": "dev", "accuracy": 0.9},
             {"step": 30, "split": "train", "examples_per_s": 5000.0, "tflops": 60.0, "data_wait": 0.1}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    means = speed.window_means(tmp_path, skip=1)
    assert means == {"examples_per_s": 4000.0, "tflops": 50.0, "data_wait": 0.05, "windows": 2}
    assert speed.window_means(tmp_path, skip=5)["examples_per_s"] == 5000.0  # too few windows: the last one


def test_the_real_preset_runs_the_issue_shapes():
    preset = load_script("train_speed").PRESETS["real"]
    assert (preset.teacher, preset.student, preset.pretrain_model) == ("ernie-1.0-base", "ernie-tiny", "teacher-small")
    assert preset.max_len == 128 and preset.workers == 8
