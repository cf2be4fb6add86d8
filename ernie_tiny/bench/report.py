"""Write a benchmark result as the ERNIE-tiny markdown table, JSON and a PNG bar chart.

    | model | backend | LCQMC | ChnSentiCorp | Average | Latency | theoretical x | of limit | vs teacher same ...
    | ernie-1.0-base (teacher) | torch fp32 | 87.9 | 95.5 | 91.70 | 633 ms (1.0x) | 1.0x | 100% | 1.0x (100%) ...

Metrics are x100 (accuracy, entity F1, ranking MRR/F1 as "mrr/f1"); Average is the mean
of the tasks' main metrics. Latency is the mean model time per batch; the speed-up in
brackets is against the reference (the first backend's fp32 teacher). ``theoretical x`` is
the reference's FLOPs over the row's at the shapes each ran (:mod:`ernie_tiny.flops`),
``of limit`` the measured speed-up over it; ``vs teacher same backend`` is the speed-up over
the teacher on the row's backend and precision, with the fraction of its limit in brackets.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ernie_tiny.bench.benchmark import BenchResult, VariantResult, parity_summary
from ernie_tiny.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text
from ernie_tiny.tasks import TaskKind, get_task

TASK_TITLES = {"xnli": "XNLI", "lcqmc": "LCQMC", "chnsenticorp": "ChnSentiCorp", "nlpcc-dbqa": "NLPCC-DBQA",
               "msra-ner": "MSRA-NER", "reviews": "Reviews"}


def metric_cell(task_name: str, metrics: dict[str, float] | None) -> str:
    if not metrics:
        return "—"
    task = get_task(task_name)
    if task.kind is TaskKind.ranking:
        return f"{100 * metrics['mrr']:.1f}/{100 * metrics['f1']:.1f}"
    return f"{100 * metrics[task.main_metric]:.1f}"


def average(result: BenchResult, variant: VariantResult) -> float | None:
    """Mean of the main metrics, x100; None unless every task was scored."""
    values = [variant.metrics.get(t, {}).get(get_task(t).main_metric) for t in result.config.tasks]
    return None if not values or None in values else 100 * sum(values) / len(values)


def format_ms(ms: float) -> str:
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def row_name(variant: VariantResult) -> str:
    return variant.name + (", char-length input" if variant.input_kind == "char-length" else "")


def percent(fraction: float | None) -> str:
    return f"{100 * fraction:.0f}%" if fraction is not None else "—"


def same_backend_cell(variant: VariantResult) -> str:
    """``5.8x (83%)``: the speed-up over the teacher on this backend and precision, and the fraction of its limit."""
    if variant.speedup_same_backend is None:
        return "—"
    limit = f" ({percent(variant.fraction_of_limit_same_backend)})" if variant.fraction_of_limit_same_backend else ""
    return f"{variant.speedup_same_backend:.1f}x{limit}"


def markdown_table(result: BenchResult) -> str:
    tasks = result.config.tasks
    header = ["model", "backend"] + [TASK_TITLES.get(t, t) for t in tasks] + [
        "Average", "Latency", "theoretical x", "of limit", "vs teacher same backend", "tokens/text",
        "padded length", "tokenization", "end-to-end"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in result.variants:
        avg = average(result, variant)
        latency = variant.latency
        cells = [row_name(variant), f"{variant.backend} {variant.precision}"]
        cells += [metric_cell(t, variant.metrics.get(t)) for t in tasks]
        cells.append(f"{avg:.2f}" if avg is not None else "—")
        if latency is None:
            cells += ["—"] * 8
        else:
            cells += [f"{format_ms(latency.model_ms)} ({variant.speedup:.1f}x)",
                      f"{variant.theoretical_speedup:.1f}x" if variant.theoretical_speedup else "—",
                      percent(variant.fraction_of_limit), same_backend_cell(variant),
                      f"{latency.mean_tokens:.1f}", f"{latency.mean_padded_length:.1f}",
                      format_ms(latency.tokenize_ms), format_ms(latency.end_to_end_ms)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def caption(result: BenchResult) -> str:
    config, env = result.config, result.environment
    first = next((v.latency for v in result.variants if v.latency is not None), None)
    order = "length-sorted batches" if config.sort_by_length else "dataset order"
    weights = "random weights at the presets' shapes (--synthetic), so no accuracy" if config.synthetic \
        else "fine-tuned checkpoints"
    lines = [
        f"({env['device_name']}, {config.device.value}; {result.latency_source}; maxlen {config.max_len}, "
        f"batch {config.batch_size}, {order}, padded to each batch's longest; "
        f"mean of {config.runs} run{'s' if config.runs > 1 else ''} after {config.warmup_batches} warm-up batches; "
        f"torch threads = onnxruntime intra-op threads = {env['torch_threads']}; idle threads do not spin: "
        f"onnxruntime allow_spinning=0, OMP_WAIT_POLICY={env.get('omp_wait_policy')}.)",
        "",
        f"- Latency: mean model time per batch (inputs to device, forward, outputs to host). (Nx) = speed-up over "
        f"{result.reference}: the median over runs of each run's ratio (every run times all variants back to "
        f"back, so load changes between runs cancel). Tokenization and end-to-end are per batch too.",
        f"- theoretical x: FLOPs of {result.reference} over the row's FLOPs, both counted from the model configs "
        f"at the batch shapes each ran (rows x padded length, padding included; ernie_tiny.flops): the "
        f"speed-up if both ran at the same FLOP rate. of limit: measured speed-up / theoretical x (above 100%: "
        f"the row's backend or precision does more FLOPs per second than the reference).",
        "- vs teacher same backend: speed-up over the teacher on the row's backend and precision (the onnxruntime "
        "int8 student against the onnxruntime int8 teacher), median of per-run ratios; in brackets the fraction "
        "of the theoretical x it reaches. padded length: mean sequence length per batch, the s of the FLOP count.",
        f"- Models: {weights}." + ("" if config.synthetic else " Accuracy columns: dev set"
                                   + (f", first {config.accuracy_examples} examples" if config.accuracy_examples
                                      else "") + ", x100 (ranking: MRR/F1)."),
        f"- Measured {env['measured_at']} with ernie-tiny {env['ernie_tiny']}, torch {env['torch']}, "
        f"onnxruntime {env['onnxruntime']}; load average before/after: {env.get('load_average_start')} / "
        f"{env['load_average_1_5_15']}.",
        f"- Command: `{env['command']}`",
    ]
    if first is not None:
        lines.append("- p50/p95 over runs and per batch, per-run ratios and the ratio of means are in bench.json.")
    lines += [f"- Parity {line}" for line in parity_summary(result.parity)]
    return "\n".join(lines) + "\n"


def to_json(result: BenchResult) -> dict:
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result.config).items()}
    config = {k: ([str(x) if isinstance(x, Path) else x for x in v] if isinstance(v, tuple) else v)
              for k, v in config.items()}
    return {"table": markdown_table(result), "config": config, "environment": result.environment,
            "latency_task": result.latency_task, "latency_source": result.latency_source,
            "reference": result.reference,
            "variants": [asdict(v) | {"average": average(result, v)} for v in result.variants],
            "parity": result.parity}


def variant_label(variant: VariantResult) -> str:
    return f"{row_name(variant)}, {variant.backend} {variant.precision}"


TEACHER_COLOURS = ("#c0504d", "#e08a2c", "#9b3d6e", "#d4a017")  # warm
STUDENT_COLOURS = ("#4f81bd", "#2e9e6b", "#7a5fb0", "#3fa7c4", "#5b6b7f", "#6fae3c")  # cool


def variant_colours(result: BenchResult) -> dict[str, str]:
    """One colour per variant label, the same in every panel: teachers warm, students cool."""
    colours: dict[str, str] = {}
    used = {"teacher": 0, "student": 0}
    for variant in result.variants:
        label = variant_label(variant)
        if label not in colours:
            role = "teacher" if variant.role == "teacher" else "student"
            palette = TEACHER_COLOURS if role == "teacher" else STUDENT_COLOURS
            colours[label] = palette[used[role] % len(palette)]
            used[role] += 1
    return colours


def zoomed_limits(values: list[float], floor: float = 0.0, ceiling: float = 100.0) -> tuple[float, float]:
    """Axis limits around ``values`` with a margin (a quarter of their range, at least 2 points), within bounds.

    On a 0-100 axis 76.7 and 78.3 look the same; zoomed to 72-83 the gap is visible.
    """
    low, high = min(values), max(values)
    margin = max(2.0, 0.25 * (high - low))
    return max(floor, low - margin), min(ceiling, high + margin)


def bar_figure(result: BenchResult):
    """The matplotlib Figure of :func:`bar_chart`: latency per variant (left), main metric per task (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: never touches the global backend
    from matplotlib.figure import Figure

    colours = variant_colours(result)
    timed = [v for v in result.variants if v.latency is not None]
    scored = [v for v in result.variants if v.metrics]
    panels = 1 + bool(scored)
    figure = Figure(figsize=(7 * panels, 0.55 * max(len(timed), 3) + 2.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    ax = axes[0]
    values = [v.latency.model_ms for v in timed]
    ax.barh(range(len(timed)), values, color=[colours[variant_label(v)] for v in timed])
    reference_ms = next((v.latency.model_ms for v in timed if v.input_kind == "own"
                         and f"{v.name} [{v.backend} {v.precision}]" == result.reference), None)
    # Where each bar would end at the reference's FLOP rate: reference ms / theoretical x.
    limits = [reference_ms / v.theoretical_speedup if reference_ms and v.theoretical_speedup else None
              for v in timed]
    marked = [(row, ms) for row, ms in enumerate(limits) if ms is not None]
    if marked:
        ax.plot([ms for _, ms in marked], [row for row, _ in marked], linestyle="none", marker="|", markersize=16,
                markeredgewidth=2, color="black", label="shape limit (the reference's ms / theoretical x)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    for row, (variant, limit_ms) in enumerate(zip(timed, limits)):
        of_limit = f" of {variant.theoretical_speedup:.1f}x" if variant.theoretical_speedup else ""
        ax.text(max(variant.latency.model_ms, limit_ms or 0.0), row, f"  {variant.speedup:.1f}x{of_limit}",
                va="center", fontsize=8)  # right of the bar or its limit mark, whichever ends later
    ax.set_yticks(range(len(timed)), [variant_label(v).replace(", ", "\n", 1) for v in timed], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.35 * max(values + [ms for _, ms in marked], default=1.0))  # room for the speed-up labels
    ax.set_xlabel(f"ms per batch of {result.config.batch_size} (mean of {result.config.runs} runs)\n"
                  f"Nx of Mx: speed-up over {result.reference or 'the first teacher'}, of its theoretical Mx",
                  fontsize=8)
    ax.set_title(f"Latency, {result.latency_source}", fontsize=9)
    if scored:
        ax = axes[1]
        tasks = list(result.config.tasks)
        width = 0.8 / len(scored)
        heights_seen: list[float] = []
        for i, variant in enumerate(scored):
            heights = [100 * variant.metrics.get(t, {}).get(get_task(t).main_metric, float("nan")) for t in tasks]
            heights_seen += [h for h in heights if h == h]
            bars = ax.bar([x + i * width for x in range(len(tasks))], heights, width,
                          color=colours[variant_label(variant)], label=variant_label(variant))
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks([x + width * (len(scored) - 1) / 2 for x in range(len(tasks))],
                      [TASK_TITLES.get(t, t) for t in tasks])
        low, high = zoomed_limits(heights_seen or [0.0, 100.0])
        ax.set_ylim(low, high)
        ax.set_ylabel("dev main metric x100" + (" (axis zoomed)" if low > 0 else ""))
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
        ax.set_title("Accuracy (colours as in the latency panel)", fontsize=9)
    figure.tight_layout()
    return figure


def bar_chart(result: BenchResult) -> bytes:
    """PNG: latency per variant (left) and each task's main metric per variant (right), one colour per variant."""
    import io

    buffer = io.BytesIO()
    bar_figure(result).savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_report(result: BenchResult, out_dir: str | Path) -> dict[str, Path]:
    """``bench.md`` (table + caption), ``bench.json`` and ``bench.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {"markdown": out_dir / "bench.md", "json": out_dir / "bench.json", "png": out_dir / "bench.png"}
    atomic_write_text(paths["markdown"], markdown_table(result) + "\n" + caption(result))
    atomic_write_json(paths["json"], to_json(result))
    atomic_write_bytes(paths["png"], bar_chart(result))
    return paths
