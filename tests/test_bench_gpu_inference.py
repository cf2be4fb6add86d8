"""benchmarks/gpu_inference.py on micro models: a row per (precision, path, batch), ratios of the same run."""

from __future__ import annotations

import argparse

from benchmark_script import load_script
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.tokenization.workers import TokenizerPool

PAIRS = [("今天天气很好", "明天会下雨吗"), ("这家店的菜好吃", None), ("怎么注册微信", "微信怎么注册账号")] * 12


def test_measure_gives_every_row_and_the_table_and_targets_read_them():
    script = load_script("gpu_inference")
    tokenizer = CharTokenizer.from_texts([t for pair in PAIRS for t in pair if t])
    tokenizers = {"teacher": tokenizer, "student": tokenizer}
    models = {role: script.random_model(preset, tokenizer)
              for role, preset in (("teacher", "teacher-micro"), ("student", "student-micro"))}
    args = argparse.Namespace(device="cpu", precisions=["fp32", "bf16"], max_len=32, runs=1, pipeline_texts=80,
                              tokenizer_workers=1)
    with TokenizerPool(tokenizer, 1, 32) as teacher_pool, TokenizerPool(tokenizer, 0, 32) as student_pool:
        rows = script.measure(args, PAIRS, tokenizers, models, {"teacher": teacher_pool, "student": student_pool})
    assert [(r["precision"], r["path"], r["batch"]) for r in rows] == [
        (p, "eager", b) for p in ("fp32", "bf16") for b in (1, 8, 32)]  # no CUDA graphs off CUDA
    for row in rows:
        assert row["model_x"] == row["teacher_model_ms"] / row["student_model_ms"]
        assert row["teacher_e2e_ms"] == row["teacher_model_ms"] + row["teacher_tokenize_ms"]
        # batch 8 and 32 also stream 80 pairs through the pools (one forked worker, one in process)
        assert ("pipelined_x" in row) == (row["batch"] in (8, 32))
        if "pipelined_x" in row:
            assert row["pipelined_x"] == row["teacher_pipelined_ms"] / row["student_pipelined_ms"] > 0
    table = script.markdown_table(rows)
    assert table.count("\n") == 2 + len(rows) and "| bf16 | eager | 32 |" in table and "| — | — | — |" in table
    lines = script.target_lines(rows)
    assert any("target <= 0.3" in line for line in lines) and any("pipelined" in line for line in lines)
