"""The benchmark scripts' own helpers: live row progress of distill_quality, the pretrained pipeline's table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_script import load_script


def test_row_progress_reads_the_last_train_line_even_while_one_is_being_written(tmp_path):
    quality = load_script("distill_quality")
    assert quality.row_progress(tmp_path) == (0, None)  # the row has not logged yet
    lines = [json.dumps({"step": 10, "split": "train", "loss": 0.9}), json.dumps({"step": 10, "split": "dev"}),
             json.dumps({"step": 20, "split": "train", "loss": 0.5}), '{"step": 30, "spl']  # a half-written line
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines), encoding="utf-8")
    assert quality.row_progress(tmp_path) == (20, 0.5)
    assert quality.row_steps({"stage": "both", "steps_intermediate": 100, "steps_prediction": 200}) == 300
    assert quality.row_steps({"stage": "joint", "steps_intermediate": 100, "steps_prediction": 200}) == 200


def finished_cell(pipeline, cell, args, dev: float, test: float) -> dict:
    """Write the metrics.json a finished fine-tune leaves, with the settings the script would pass."""
    values = pipeline.finetune_values(cell, args)
    out_dir = Path(values["out_dir"])
    out_dir.mkdir(parents=True)
    config = {**values, "resume": False, "optim": {**values["optim"], "weight_decay": 0.01}}
    metrics = {"dev": {"accuracy": dev}, "test": {"accuracy": test}, "train_seconds": 10.0, "config": config}
    (out_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return metrics


def test_pretrained_pipeline_reuses_only_cells_run_with_the_same_settings(tmp_path):
    pipeline = load_script("pretrained_pipeline")
    args = pipeline.argparse.Namespace(out=str(tmp_path), data_root="data", max_len=64, steps=300, limit=None,
                                       eval_limit=None, lr=5e-4, batch_size=32, eval_every=100, preset="teacher-small")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    cell = pipeline.Cell("waimai_10k", "pretrained", str(ckpt), 42)
    values = pipeline.finetune_values(cell, args)
    # waimai is read as a two-class sentiment task; a checkpoint init rebuilds the vocab from train
    assert values["task"] == "chnsenticorp" and values["data_dir"] == str(Path("data") / "waimai_10k")
    assert values["init"] == str(ckpt) and values["vocab_from_train"] is True and "preset" not in values
    assert pipeline.finished_cell(values) is None  # nothing run yet
    finished_cell(pipeline, cell, args, 0.8, 0.7)
    assert pipeline.finished_cell(values)["test"]["accuracy"] == 0.7
    metrics = json.loads((Path(values["out_dir"]) / "metrics.json").read_text())
    metrics["config"]["eval_limit"], metrics["examples"] = 2000, {"dev": 1199, "test": 1201}  # above both: all scored
    (Path(values["out_dir"]) / "metrics.json").write_text(json.dumps(metrics))
    assert pipeline.finished_cell(values) is not None
    metrics["config"]["eval_limit"] = 1200  # cuts the test split: another setting
    (Path(values["out_dir"]) / "metrics.json").write_text(json.dumps(metrics))
    assert pipeline.finished_cell(values) is None
    metrics["config"]["eval_limit"] = None
    (Path(values["out_dir"]) / "metrics.json").write_text(json.dumps(metrics))
    args.lr = 1e-4  # another learning rate: the finished cell is not this one
    assert pipeline.finished_cell(pipeline.finetune_values(cell, args)) is None
    scratch = pipeline.finetune_values(pipeline.Cell("reviews", "scratch", None, 42), args)
    assert scratch["preset"] == "teacher-small" and scratch["data_dir"] is None and "init" not in scratch


def test_pretrained_pipeline_table_averages_tasks_and_seeds_and_states_the_gain(tmp_path):
    pipeline = load_script("pretrained_pipeline")
    args = pipeline.argparse.Namespace(out=str(tmp_path), data_root="data", max_len=64, steps=300, limit=None,
                                       eval_limit=None, lr=5e-4, batch_size=32, eval_every=100, preset="teacher-small")
    cells, results = [], {}
    scores = {("lcqmc", "scratch", 1): (0.70, 0.72), ("lcqmc", "scratch", 2): (0.72, 0.74),
              ("lcqmc", "pt", 1): (0.75, 0.76), ("lcqmc", "pt", 2): (0.77, 0.78),
              ("reviews", "scratch", 1): (0.80, 0.80), ("reviews", "scratch", 2): (0.80, 0.80),
              ("reviews", "pt", 1): (0.84, 0.86), ("reviews", "pt", 2): (0.84, 0.86)}
    for (task, init, seed), (dev, test) in scores.items():
        cell = pipeline.Cell(task, init, None if init == "scratch" else str(tmp_path), seed)
        cells.append(cell)
        results[cell] = finished_cell(pipeline, cell, args, dev, test)
    summary = pipeline.summarise(cells, results, ["lcqmc", "reviews"], ["scratch", "pt"])
    assert summary["cells"]["lcqmc/pt"]["test"] == pytest.approx(77.0) and summary["cells"]["lcqmc/pt"]["seeds"] == 2
    assert summary["average"]["scratch"]["test"] == pytest.approx(76.5)
    assert summary["average"]["pt"]["test"] == pytest.approx(81.5)
    table = pipeline.markdown(summary)
    assert "| pt | 77.00 (76.00) | 86.00 (84.00) | 81.50 (80.00) | +5.00 |" in table
    # a task missing for one init leaves its average out rather than averaging fewer tasks
    partial = pipeline.summarise(cells[:6], {c: results[c] for c in cells[:6]}, ["lcqmc", "reviews"], ["scratch", "pt"])
    assert "pt" not in partial["average"] and "| pt | 77.00 (76.00) | - | - | - |" in pipeline.markdown(partial)
    pipeline.plot(summary, tmp_path / "pipeline.png")
    assert (tmp_path / "pipeline.png").stat().st_size > 10_000


def test_pretrained_pipeline_refuses_a_bad_init(tmp_path):
    pipeline = load_script("pretrained_pipeline")
    with pytest.raises(SystemExit, match="expected NAME=CHECKPOINT_DIR"):
        pipeline.parse_inits("justapath")
    with pytest.raises(SystemExit, match="not a checkpoint folder"):
        pipeline.parse_inits(f"pt={tmp_path / 'missing'}")
    assert pipeline.parse_inits(f"pt={tmp_path}") == [("scratch", None), ("pt", str(tmp_path))]
