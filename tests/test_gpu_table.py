"""benchmarks/gpu_table.py: the GPU check's one table says what ran, what failed and which tokenizer loops ran."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmark_script import BENCHMARKS, load_script

gpu_table = load_script("gpu_table")


def tokenizer_result(c_loop: bool, jieba_rs: bool = True) -> dict:
    return {"sets": [{"set": "lcqmc", "hot_path": {"c_loop": c_loop, "jieba_rs": jieba_rs},
                      "rows": {"subword": {"x_jieba_lcut": 0.26, "ms_per_32": 1.0},
                               "char": {"x_jieba_lcut": 0.25, "ms_per_32": 0.96}}}]}


def test_tokenizer_rows_judge_the_student_and_name_a_python_fallback():
    compiled = gpu_table.tokenizer_rows(tokenizer_result(c_loop=True))
    assert len(compiled) == 2 and "| 0.26x (1.00 ms per 32 examples) | <= 0.35x | yes |" in compiled[0]
    assert "fallback" not in compiled[0]
    fallback = gpu_table.tokenizer_rows(tokenizer_result(c_loop=False, jieba_rs=False))
    assert "lcqmc (Python fallback: c_loop, jieba_rs) dev" in fallback[0]
    assert "fallback" not in fallback[1]  # the teacher's row has no such loops
    assert gpu_table.tokenizer_rows(None) == []


def test_the_table_names_failed_stages_and_writes_gpu_check_md(tmp_path):
    (tmp_path / "tokenizer_speed.json").write_text(json.dumps(tokenizer_result(c_loop=True)), encoding="utf-8")
    stages = [{"stage": "tokenizer", "rc": 0, "seconds": 12, "command": "x"},
              {"stage": "train", "rc": 124, "seconds": 150, "command": "y"}]
    (tmp_path / "stages.jsonl").write_text("".join(json.dumps(s) + "\n" for s in stages), encoding="utf-8")
    out = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_table.py"), str(tmp_path), "--device", "cpu",
                          "--preset", "micro"], capture_output=True, text=True, check=True).stdout
    assert "| stage | train | exit 124 (time limit) | exit 0 | **no** |" in out
    assert "162 s of stages" in out and "DEVICE=cpu PRESET=micro" in out
    assert (tmp_path / "gpu_check.md").read_text(encoding="utf-8") == out.rstrip("\n") + "\n"


def test_inference_rows_give_the_pipelined_end_to_end_beside_the_sequential_one():
    def result(batch: int, pipelined: bool) -> dict:
        out = {"precision": "fp16", "path": "CUDA graphs", "batch": batch, "student_model_ms": 0.2 + batch / 100,
               "teacher_model_ms": 0.7 + batch / 30, "model_x": 3.4, "e2e_x": 1.7, "student_e2e_ms": 1.0,
               "teacher_e2e_ms": 1.7}
        if pipelined:
            out |= {"pipelined_x": 3.2, "student_pipelined_ms": 0.4, "teacher_pipelined_ms": 1.28,
                    "tokenizer_workers": 8}
        return out

    rows = gpu_table.inference_rows({"rows": [result(1, False), result(8, True), result(32, True)]})
    sequential = [r for r in rows if "tokenize + model, batch" in r]
    pipelined = [r for r in rows if "pipelined with 8 tokenizer processes" in r]
    assert len(sequential) == 2 and all("| 1.70x (1.00 vs 1.70 ms) | >= 3x | **no** |" in r for r in sequential)
    assert len(pipelined) == 2 and all("| 3.20x (0.40 vs 1.28 ms per batch) | >= 3x | yes |" in r for r in pipelined)
