"""The one markdown table of benchmarks/gpu_check.sh: every measured figure beside its target.

    python benchmarks/gpu_table.py runs/gpu_check --device cuda --preset real

Reads what the stages wrote under the folder (``tokenizer_speed.json``, ``inference/gpu_inference.json``,
``serve/serve_load.json``, ``train/train_speed.json``, ``stages.jsonl``) and prints one table: area,
what was measured, the value, issue 23/24's target and whether it is met. A stage that failed or
ran out of time is a row saying so, never a silent gap. Also writes ``gpu_check.md`` there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path


WHERE = "GPU"  # "CPU (dry run)" when --device is not CUDA: a dry run's figures are no GPU's


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def row(area: str, what: str, value: str, target: str = "", met: bool | None = None) -> str:
    mark = "" if met is None else ("yes" if met else "**no**")
    return f"| {area} | {what} | {value} | {target} | {mark} |"


def tokenizer_rows(result: dict | None) -> list[str]:
    if result is None:
        return []
    rows = []
    for measured in result.get("sets", []):
        name = measured.get("set", "?")
        for label, role in (("subword", "student"), ("char", "teacher")):
            stats = measured.get("rows", {}).get(label, {})
            ratio, ms32 = stats.get("x_jieba_lcut"), stats.get("ms_per_32")
            if ratio is not None:
                hot, label = measured.get("hot_path", {}), name
                if role == "student" and hot and not (hot.get("c_loop") and hot.get("jieba_rs")):
                    label += " (Python fallback: " + ", ".join(k for k in ("c_loop", "jieba_rs") if not hot.get(k)) + ")"
                rows.append(row("tokenizer (host CPU, 1 thread)", f"{role} tokenizer time / jieba.lcut, {label} dev",
                                f"{ratio:.2f}x" + (f" ({ms32:.2f} ms per 32 examples)" if ms32 is not None else ""),
                                "<= 0.35x" if role == "student" else "", ratio <= 0.35 if role == "student" else None))
    return rows


def inference_rows(result: dict | None) -> list[str]:
    if result is None or not result.get("rows"):
        return []
    rows_in = result["rows"]
    by = {(r["precision"], r["path"], r["batch"]): r for r in rows_in}
    best = min(rows_in, key=lambda r: (r["batch"] != 32, r["student_model_ms"]))
    setting = (best["precision"], best["path"])
    label = f"{setting[0]}, {setting[1]}"
    out = []
    for batch, target in ((1, 0.3), (32, 0.5)):
        r = by.get((*setting, batch))
        if r:
            out.append(row(f"{WHERE} inference", f"student model ms, batch {batch} ({label})",
                           f"{r['student_model_ms']:.3f}", f"<= {target}", r["student_model_ms"] <= target))
    for batch in (1, 8, 32):
        r = by.get((*setting, batch))
        if r:
            out.append(row(f"{WHERE} inference", f"student vs teacher model x, batch {batch} ({label})",
                           f"{r['model_x']:.2f}x", ">= 3.3x", r["model_x"] >= 3.3))
    for batch in (8, 32):
        r = by.get((*setting, batch))
        if r:
            out.append(row(f"{WHERE} end to end", f"student vs teacher, tokenize + model, batch {batch} ({label})",
                           f"{r['e2e_x']:.2f}x ({r['student_e2e_ms']:.2f} vs {r['teacher_e2e_ms']:.2f} ms)",
                           ">= 3x", r["e2e_x"] >= 3))
    for batch in (8, 32):
        r = by.get((*setting, batch))
        if r and "pipelined_x" in r:
            workers = r["tokenizer_workers"]
            beside = f"{workers} tokenizer processes" if workers else "the tokenizer in process (0 workers)"
            out.append(row(f"{WHERE} end to end", f"student vs teacher, tokenize + model pipelined with "
                           f"{beside}, batch {batch} ({label})",
                           f"{r['pipelined_x']:.2f}x ({r['student_pipelined_ms']:.2f} vs "
                           f"{r['teacher_pipelined_ms']:.2f} ms per batch)", ">= 3x", r["pipelined_x"] >= 3))
    eager = by.get(("fp32", "eager", 32))
    if eager and setting != ("fp32", "eager"):
        r = by[(*setting, 32)]
        out.append(row(f"{WHERE} inference", "student model ms, batch 32: fp32 eager -> " + label,
                       f"{eager['student_model_ms']:.3f} -> {r['student_model_ms']:.3f} "
                       f"({eager['student_model_ms'] / r['student_model_ms']:.1f}x faster)"))
    return out


def serve_rows(result: dict | None) -> list[str]:
    if result is None:
        return []
    targets = result.get("targets", {})
    out = []
    if "speedup_at_c_max" in targets:
        out.append(row(f"{WHERE} serve (torch)", f"dynamic batching / --max-batch 1 requests/s at C = {targets['c_max']}",
                       f"{targets['speedup_at_c_max']}x", ">= 5x", targets["speedup_at_c_max"] >= 5))
    if "c1_p99_minus_in_process_p99_ms" in targets:
        value = targets["c1_p99_minus_in_process_p99_ms"]
        out.append(row(f"{WHERE} serve (torch)", "C = 1: server p99 - in-process p99", f"{value} ms", "<= 2 ms",
                       value <= 2))
    return out


TRAIN_TARGETS = {"finetune": 3000, "distill": 2500, "pretrain": 5000}


def train_rows(result: dict | None) -> list[str]:
    if result is None:
        return []
    out = []
    for trained in result.get("rows", []):
        name, speed = trained["trainer"], trained["examples_per_s"]
        target = TRAIN_TARGETS.get(trained.get("kind", ""))
        out.append(row(f"{WHERE} training", f"{name}: examples/s ({trained.get('tflops', float('nan')):.1f} TFLOP/s)",
                       f"{speed:,.0f}", f">= {target:,}" if target else "", speed >= target if target else None))
        if trained.get("kind") == "pretrain" and "data_wait" in trained:
            busy = 1 - trained["data_wait"]
            out.append(row(f"{WHERE} training", f"{name}: share of time not waiting for data", f"{busy:.1%}", ">= 90%",
                           busy >= 0.9))
    return out


def stage_rows(folder: Path) -> tuple[list[str], list[dict]]:
    stages = []
    path = folder / "stages.jsonl"
    if path.is_file():
        stages = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    failed = [row("stage", s["stage"], f"exit {s['rc']}" + (" (time limit)" if s["rc"] in (124, 137) else ""),
                  "exit 0", False) for s in stages if s["rc"] != 0]
    return failed, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="real")
    args = parser.parse_args()
    global WHERE
    WHERE = "GPU" if args.device.startswith("cuda") else f"{args.device.upper()} (dry run)"
    folder = args.folder
    inference = read_json(folder / "inference" / "gpu_inference.json")
    gpu = (inference or {}).get("environment", {}).get("gpu", "no GPU (a dry run)")
    failed, stages = stage_rows(folder)
    lines = ["| area | measured | value | target | met |", "|---|---|---|---|---|"]
    lines += tokenizer_rows(read_json(folder / "tokenizer_speed.json"))
    lines += inference_rows(inference)
    lines += serve_rows(read_json(folder / "serve" / "serve_load.json"))
    lines += train_rows(read_json(folder / "train" / "train_speed.json"))
    lines += failed
    seconds = sum(s["seconds"] for s in stages)
    header = (f"`DEVICE={args.device} PRESET={args.preset} benchmarks/gpu_check.sh`, "
              f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}, {gpu}, "
              f"{os.cpu_count()} host CPUs, load average {os.getloadavg()[0]:.2f}, Python {platform.python_version()}; "
              f"{seconds} s of stages")
    text = header + "\n\n" + "\n".join(lines) + "\n"
    (folder / "gpu_check.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
