"""The two pictures a run leaves: bench.png (latency + accuracy) and the loss-curve PNG, readable at a glance."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from ernie_tiny.bench.benchmark import BenchConfig, BenchResult, VariantResult
from ernie_tiny.bench.latency import LatencyStats
from ernie_tiny.bench.report import bar_chart, bar_figure, variant_label
from ernie_tiny.training.logging import loss_curve_figure, plot_loss_curves


def latency(model_ms: float) -> LatencyStats:
    values = {f.name: 1 for f in fields(LatencyStats) if f.name != "run_model_ms"}
    return LatencyStats(**(values | {"model_ms": model_ms}))


def variant(name: str, role: str, backend: str, precision: str, ms: float, accuracy: float | None,
            speedup: float) -> VariantResult:
    metrics = {"reviews": {"accuracy": accuracy}} if accuracy is not None else {}
    return VariantResult(name=name, role=role, backend=backend, precision=precision, input_kind="own",
                         preset=name, metrics=metrics, latency=latency(ms), speedup=speedup)


def bench_result() -> BenchResult:
    # As in the quickstart: the teacher scored once (torch), the student on torch and onnxruntime int8.
    variants = [variant("teacher-small (teacher)", "teacher", "torch", "fp32", 90.0, 0.7667, 1.0),
                variant("teacher-small (teacher)", "teacher", "onnxruntime", "fp32", 60.0, None, 1.5),
                variant("student-small (student)", "student", "torch", "fp32", 32.0, 0.7834, 2.8),
                variant("student-small (student)", "student", "onnxruntime", "int8", 13.0, 0.7811, 6.8)]
    return BenchResult(config=BenchConfig(tasks=("reviews",), data_dirs=(None,), synthetic=False,
                                          teachers=(Path("t"),), students=(Path("s"),)),
                       environment={}, variants=variants, latency_task="reviews", latency_source="reviews dev")


def test_bench_png_gives_each_variant_one_colour_in_both_panels():
    result = bench_result()
    latency_axes, accuracy_axes = bar_figure(result).axes
    timed = [variant_label(v) for v in result.variants]
    latency_colours = {label: bar.get_facecolor() for label, bar in zip(timed, latency_axes.patches)}
    assert len(set(latency_colours.values())) == len(timed)  # no two variants share a colour
    scored = [variant_label(v) for v in result.variants if v.metrics]
    for label, bar in zip(scored, accuracy_axes.patches):
        assert bar.get_facecolor() == latency_colours[label], label
    assert [t.get_text() for t in accuracy_axes.get_legend().get_texts()] == scored


def test_bench_png_zooms_the_accuracy_axis_to_the_values():
    low, high = bar_figure(bench_result()).axes[1].get_ylim()
    assert 70 <= low < 76.67 and 78.34 < high <= 85  # 76.7 vs 78.3 must not be flattened on a 0-100 axis
    assert bar_chart(bench_result())[:4] == b"\x89PNG"


def records() -> list[dict]:
    train = [{"step": s, "split": "train", "stage": "joint", "loss": 40.0 / s + 1.0, "loss_soft": 0.5 / s,
              "loss_hidden": 39.0 / s + 1.0, "lr": 1e-4} for s in range(10, 310, 10)]
    dev = [{"step": s, "split": "dev", "accuracy": a} for s, a in ((100, 0.767), (200, 0.781), (300, 0.783))]
    return train + dev


def test_loss_curves_give_each_term_its_own_panel_and_a_readable_dev_panel():
    figure = loss_curve_figure(records())
    titles = [axes.get_title() for axes in figure.axes if axes.axison]
    assert titles == ["loss (total)", "loss_soft", "loss_hidden", "dev accuracy"]
    soft = figure.axes[1]
    low, high = soft.get_ylim()
    assert soft.get_yscale() == "log" or high < 1.0  # a small term fills its own axis, not the total's
    dev = figure.axes[3]
    assert [len(line.get_xdata()) for line in dev.get_lines()] == [3] and dev.get_lines()[0].get_marker() == "o"
    assert {t.get_text() for t in dev.texts} == {"0.767", "0.781", "0.783"}  # few points: each value written
    low, high = dev.get_ylim()
    assert 0.7 < low < 0.767 and 0.783 < high < 0.85
    assert figure.axes[0].get_legend() is None  # one curve per panel: the title names it


def test_a_legend_sits_outside_the_curves(tmp_path):
    rows = records() + [{"step": 300, "split": "dev", "f1": 0.7}]
    figure = loss_curve_figure(rows)
    figure.canvas.draw()
    dev = next(axes for axes in figure.axes if axes.get_title() == "dev metrics")
    legend = dev.get_legend().get_window_extent()
    assert not legend.overlaps(dev.get_window_extent())
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert plot_loss_curves(log, tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_a_term_logged_once_is_still_drawn():
    figure = loss_curve_figure([{"step": 6, "split": "train", "loss": 0.69}, {"step": 6, "split": "dev",
                                                                             "accuracy": 0.45}])
    (line,) = figure.axes[0].get_lines()
    assert list(line.get_xdata()) == [6] and line.get_marker() not in (None, "None", "")
