"""The benchmark: interleaved timing, accuracy per task, the table/JSON/PNG, synthetic mode, device errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from ernie_tiny.bench.benchmark import BenchConfig, BenchError, resolve_per_task, run_benchmark
from ernie_tiny.bench.environment import spinning_warning
from ernie_tiny.bench.latency import Variant, time_variants
from ernie_tiny.flops import pass_flops
from ernie_tiny.bench.report import bar_figure, markdown_table, write_report
from ernie_tiny.checkpoint import save_pretrained
from ernie_tiny.commands.bench import bench as bench_command
from ernie_tiny.heads import HeadKind
from ernie_tiny.tokenization.encoding import Encoding, TokenSpan
from ernie_tiny.model import ErnieConfig, build_model
from ernie_tiny.tasks import get_task
from ernie_tiny.tokenization.char import CharTokenizer

REVIEWS = [(1, "房间很干净，服务也很周到，下次还会再来"), (0, "隔音太差了，晚上根本睡不着"), (1, "位置方便，离地铁站很近"),
           (0, "早餐品种太少，而且都是凉的"), (1, "性价比高，前台小姐态度很好"), (0, "空调坏了也没人来修，非常失望"),
           (1, "环境优雅，床很舒服"), (0, "卫生间有异味，毛巾也不干净"), (1, "酒店新装修的，设施齐全"),
           (0, "价格偏贵，不值这个钱")]
QUESTIONS = [("怎么开通花呗", "花呗如何开通", 1), ("手机充不进电怎么办", "手机没电了", 0),
             ("这个字怎么读", "这个字的读音是什么", 1), ("北京今天天气", "上海明天下雨吗", 0),
             ("哪里可以买到火车票", "火车票在哪买", 1), ("如何学好英语", "英语怎么学", 1)]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    (root / "chnsenticorp_htl").mkdir()
    (root / "chnsenticorp_htl" / "dev.tsv").write_text(
        "label\ttext_a\n" + "".join(f"{y}\t{t}\n" for y, t in REVIEWS), encoding="utf-8")
    (root / "lcqmc").mkdir()
    (root / "lcqmc" / "dev.tsv").write_text(
        "text_a\ttext_b\tlabel\n" + "".join(f"{a}\t{b}\t{y}\n" for a, b, y in QUESTIONS), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A stand-in student tokenizer folder (char-level here: the tests check plumbing, not shortening)."""
    folder = tmp_path_factory.mktemp("student-tokenizer")
    CharTokenizer.from_texts([t for _, t in REVIEWS] + [a + b for a, b, _ in QUESTIONS]).save(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """Teacher and student roots with a sub-folder per task, random micro weights."""
    root = tmp_path_factory.mktemp("ckpts")
    tokenizer = CharTokenizer.from_texts([t for _, t in REVIEWS] + [a + b for a, b, _ in QUESTIONS])
    for role, preset in (("teacher", "teacher-micro"), ("student", "student-micro")):
        for task in ("chnsenticorp", "lcqmc"):
            torch.manual_seed(0)
            model = build_model(ErnieConfig.from_preset(preset, vocab_size=tokenizer.vocab_size),
                                "sequence_classification", 2)
            save_pretrained(model, root / role / task, tokenizer=tokenizer, task=task,
                            labels=list(get_task(task).labels))
    return root / "teacher", root / "student"


@pytest.fixture(scope="module")
def synthetic_result(data_root, tokenizer_dir):
    config = BenchConfig(tasks=("chnsenticorp",), data_dirs=(data_root / "chnsenticorp_htl",), synthetic=True,
                         teacher_preset="teacher-micro", student_preset="student-micro",
                         student_tokenizer=tokenizer_dir, backends=("torch", "onnxruntime"), runs=3, batch_size=4,
                         warmup_batches=1, threads=1, show_progress=False)
    return run_benchmark(config, log=lambda line: None)


def test_synthetic_bench_times_every_variant_on_both_backends(synthetic_result):
    rows = {(v.role, v.backend, v.precision, v.input_kind): v for v in synthetic_result.variants}
    assert set(rows) == {("teacher", "torch", "fp32", "own"), ("student", "torch", "fp32", "own"),
                         ("student", "torch", "fp32", "char-length"), ("teacher", "onnxruntime", "fp32", "own"),
                         ("teacher", "onnxruntime", "int8", "own"), ("student", "onnxruntime", "fp32", "own"),
                         ("student", "onnxruntime", "int8", "own"), ("student", "onnxruntime", "fp32", "char-length")}
    reference = rows[("teacher", "torch", "fp32", "own")]
    assert reference.speedup == 1.0 and synthetic_result.reference.endswith("[torch fp32]")
    for variant in synthetic_result.variants:
        stats = variant.latency
        assert stats.runs == 3 and stats.batches == 3 and stats.examples == len(REVIEWS)
        assert len(stats.run_model_ms) == 3 and stats.model_ms > 0 and stats.tokenize_ms > 0
        assert stats.model_ms_p50 <= stats.model_ms_p95 and stats.end_to_end_ms > stats.model_ms
        assert variant.metrics == {}  # random weights: no accuracy
        ratios = [r / v for r, v in zip(reference.latency.run_model_ms, stats.run_model_ms)]
        assert variant.speedup == pytest.approx(float(np.median(ratios)))
        assert variant.speedup_of_means == pytest.approx(reference.latency.model_ms / stats.model_ms)
    for precision in ("fp32", "int8"):  # each onnxruntime student row against the teacher at its own precision
        ort_student = rows[("student", "onnxruntime", precision, "own")]
        ort_teacher = rows[("teacher", "onnxruntime", precision, "own")]
        same_backend = [t / s for t, s in zip(ort_teacher.latency.run_model_ms, ort_student.latency.run_model_ms)]
        assert ort_student.speedup_same_backend == pytest.approx(float(np.median(same_backend)))
    assert set(synthetic_result.parity) == {"chnsenticorp-teacher-fp32", "chnsenticorp-teacher-int8",
                                            "chnsenticorp-student-fp32", "chnsenticorp-student-int8"}
    assert synthetic_result.parity["chnsenticorp-student-fp32"]["passed"] is True


def test_every_row_gets_its_flops_theoretical_ratio_and_fraction_of_limit(synthetic_result):
    rows = {v.key: v for v in synthetic_result.variants}
    reference = rows[("teacher", "torch", "fp32", "own")]
    teacher_config = ErnieConfig.from_preset("teacher-micro")
    student_config = ErnieConfig.from_preset("student-micro")
    for variant in synthetic_result.variants:
        shapes = variant.latency.batch_shapes
        assert sum(r for r, _ in shapes) == len(REVIEWS) and len(shapes) == variant.latency.batches
        assert np.mean([n for _, n in shapes]) == pytest.approx(variant.latency.mean_padded_length)
        config = teacher_config if variant.role == "teacher" else student_config
        assert variant.flops_per_pass == pass_flops(config, HeadKind.sequence_classification, 2, shapes)
        assert variant.theoretical_speedup == pytest.approx(reference.flops_per_pass / variant.flops_per_pass)
        assert variant.fraction_of_limit == pytest.approx(variant.speedup / variant.theoretical_speedup)
        assert variant.fraction_of_limit_same_backend is not None
    assert reference.theoretical_speedup == 1.0 and reference.fraction_of_limit == 1.0
    # The char-length student reads the teacher's batches: its limit is the layer count and width alone.
    char_length = rows[("student", "torch", "fp32", "char-length")]
    assert char_length.latency.batch_shapes == reference.latency.batch_shapes
    ort_int8 = rows[("student", "onnxruntime", "int8", "own")]
    ort_int8_teacher = rows[("teacher", "onnxruntime", "int8", "own")]
    own_limit = ort_int8_teacher.flops_per_pass / ort_int8.flops_per_pass
    assert ort_int8.fraction_of_limit_same_backend == pytest.approx(ort_int8.speedup_same_backend / own_limit)


def test_report_writes_table_json_and_png(synthetic_result, tmp_path):
    paths = write_report(synthetic_result, tmp_path / "report")
    table = paths["markdown"].read_text(encoding="utf-8")
    assert table.startswith("| model | backend | ChnSentiCorp | Average | Latency | theoretical x | of limit | "
                            "vs teacher same backend | tokens/text | padded length |")
    assert "teacher-micro (teacher) | torch fp32 | — | — |" in table
    assert "(1.0x) | 1.0x | 100% | 1.0x (100%) |" in table  # the reference row against itself
    rows = {v.key: v for v in synthetic_result.variants}
    int8 = rows[("student", "onnxruntime", "int8", "own")]
    assert (f"| {int8.theoretical_speedup:.1f}x | {100 * int8.fraction_of_limit:.0f}% | "
            f"{int8.speedup_same_backend:.1f}x ({100 * int8.fraction_of_limit_same_backend:.0f}%) |") in table
    assert "teacher-micro (teacher) | onnxruntime int8 |" in table and "theoretical x: FLOPs of" in table
    assert "char-length input" in table and "onnxruntime int8" in table and "Command:" in table
    assert "allow_spinning=0, OMP_WAIT_POLICY=" in table
    payload = json.loads(paths["json"].read_text(encoding="utf-8"))
    environment = payload["environment"]
    assert environment["torch"] == torch.__version__ and environment["torch_threads"] == 1
    assert environment["onnxruntime_intra_op_threads"] == 1 and environment["device_name"]
    assert len(payload["variants"]) == 8 and payload["variants"][0]["latency"]["runs"] == 3
    assert all(v["flops_per_pass"] > 0 and v["theoretical_speedup"] > 0 for v in payload["variants"])
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_marks_each_rows_shape_limit(synthetic_result):
    latency_axes = bar_figure(synthetic_result).axes[0]
    timed = synthetic_result.variants
    reference_ms = next(v.latency.model_ms for v in timed if v.key == ("teacher", "torch", "fp32", "own"))
    (limits,) = latency_axes.get_lines()
    assert list(limits.get_xdata()) == pytest.approx([reference_ms / v.theoretical_speedup for v in timed])
    labels = [text.get_text() for text in latency_axes.texts]
    assert labels == [f"  {v.speedup:.1f}x of {v.theoretical_speedup:.1f}x" for v in timed]
    assert latency_axes.get_xlim()[1] > max(max(limits.get_xdata()), max(v.latency.model_ms for v in timed))


def test_checkpoint_bench_scores_every_task_and_averages(checkpoints, data_root):
    teacher_root, student_root = checkpoints
    tasks = ["chnsenticorp", "lcqmc"]
    config = BenchConfig(tasks=tuple(tasks), data_dirs=tuple(resolve_per_task([data_root], tasks, "data")),
                         teachers=tuple(resolve_per_task([teacher_root], tasks, "teacher")),
                         students=tuple(resolve_per_task([student_root], tasks, "student")),
                         runs=1, batch_size=4, warmup_batches=0, threads=1, show_progress=False)
    result = run_benchmark(config, log=lambda line: None)
    scored = [v for v in result.variants if v.input_kind == "own"]
    assert len(scored) == 2
    for variant in scored:
        assert set(variant.metrics) == {"chnsenticorp", "lcqmc"}
        accuracy = variant.metrics["lcqmc"]["accuracy"]
        assert accuracy * len(QUESTIONS) == pytest.approx(round(accuracy * len(QUESTIONS)))  # a count of 6
    table = markdown_table(result)
    teacher = next(v for v in scored if v.role == "teacher")
    expected = 50 * (teacher.metrics["chnsenticorp"]["accuracy"] + teacher.metrics["lcqmc"]["accuracy"])
    assert f"| {expected:.2f} |" in table
    assert result.latency_source == "chnsenticorp dev, 10 of 10 texts"


class FixedTokenizer:
    """Encodes a text as [CLS] + one token per char + [SEP]; enough for timing plumbing."""

    kind = "char"
    vocab_size = 100
    pad_id = 0

    def encode_batch(self, pairs, max_len=128):
        encodings = []
        for text, _ in pairs:
            n = min(len(text), max_len - 2) + 2
            encodings.append(Encoding(tokens=["x"] * n, input_ids=[5] * n, token_type_ids=[0] * n,
                                      spans=[TokenSpan(-1, 0, 0)] * n))
        return encodings


def test_time_variants_interleaves_runs_and_length_sorting_cuts_padding():
    calls: list[str] = []

    def recorder(name):
        def infer(arrays):
            calls.append(name)
            return np.zeros((arrays["input_ids"].shape[0], 2), dtype=np.float32)
        return infer

    tokenizer = FixedTokenizer()
    variants = [Variant("a", "teacher", "torch", "fp32", tokenizer, recorder("a")),
                Variant("b", "student", "torch", "fp32", tokenizer, recorder("b"))]
    pairs = [("x" * n, None) for n in (30, 2, 28, 3, 25, 1, 27, 4)]
    stats = time_variants(variants, pairs, batch_size=2, max_len=128, runs=2, warmup_batches=1,
                          show_progress=False)
    # warm-up a, b; run 1: a a a a b b b b; run 2 rotates: b b b b a a a a
    assert calls == ["a", "b"] + ["a"] * 4 + ["b"] * 4 + ["b"] * 4 + ["a"] * 4
    dataset_order = stats[variants[0].label]
    assert dataset_order.batches == 4 and dataset_order.mean_tokens == pytest.approx(np.mean([32, 4, 30, 5, 27, 3, 29, 6]))
    assert dataset_order.mean_padded_length == pytest.approx(np.mean([32, 30, 27, 29]))
    sorted_stats = time_variants(variants[:1], pairs, batch_size=2, max_len=128, runs=1, warmup_batches=0,
                                 sort_by_length=True, show_progress=False)
    assert sorted_stats[variants[0].label].mean_padded_length == pytest.approx(np.mean([4, 6, 29, 32]))


def test_resolve_per_task_finds_sub_folders_or_pairs_paths(data_root, tmp_path):
    assert resolve_per_task([data_root], ["chnsenticorp", "lcqmc"], "data") == [
        data_root / "chnsenticorp_htl", data_root / "lcqmc"]
    assert resolve_per_task([data_root], ["lcqmc"], "data") == [data_root / "lcqmc"]
    assert resolve_per_task([data_root / "lcqmc"], ["lcqmc"], "data") == [data_root / "lcqmc"]  # holds dev.tsv
    assert resolve_per_task([], ["reviews"], "data") == [None]
    with pytest.raises(BenchError, match="nor in a data sub-folder for task xnli"):
        resolve_per_task([data_root], ["xnli", "lcqmc"], "data")
    with pytest.raises(BenchError, match="2 data paths for 3 tasks"):
        resolve_per_task([data_root, tmp_path], ["xnli", "lcqmc", "chnsenticorp"], "data")


def test_bench_rejects_a_checkpoint_whose_head_does_not_fit_the_task(checkpoints, data_root, tmp_path):
    tokenizer = CharTokenizer.from_texts(["好"])
    ner = save_pretrained(build_model(ErnieConfig.from_preset("student-micro", vocab_size=tokenizer.vocab_size),
                                      "token_classification", 7), tmp_path / "ner", tokenizer=tokenizer)
    config = BenchConfig(tasks=("lcqmc",), data_dirs=(data_root / "lcqmc",), teachers=(checkpoints[0] / "lcqmc",),
                         students=(ner,), runs=1, show_progress=False)
    with pytest.raises(BenchError, match="token_classification head; task lcqmc needs sequence_classification"):
        run_benchmark(config, log=lambda line: None)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(bench_command)
    app.command("noop")(lambda: None)
    return app


def test_cli_synthetic_bench_writes_the_report(data_root, tokenizer_dir, tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli(), [
        "bench", "--synthetic", "--task", "lcqmc", "--data-dir", str(data_root / "lcqmc"),
        "--student-tokenizer", str(tokenizer_dir), "--teacher-preset", "teacher-micro",
        "--student-preset", "student-micro", "--runs", "2", "--batch-size", "3", "--threads", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| model | backend | LCQMC | Average | Latency |" in result.output
    assert {p.name for p in out.iterdir()} == {"bench.md", "bench.json", "bench.png"}


def test_cli_errors_are_one_line(data_root, tmp_path):
    runner = CliRunner()
    no_tokenizer = runner.invoke(cli(), ["bench", "--synthetic", "--task", "lcqmc", "--data-dir",
                                         str(data_root / "lcqmc"), "--out", str(tmp_path / "x")])
    assert no_tokenizer.exit_code == 1 and "--student-tokenizer" in no_tokenizer.output
    no_checkpoints = runner.invoke(cli(), ["bench", "--task", "lcqmc", "--data-dir", str(data_root / "lcqmc")])
    assert no_checkpoints.exit_code == 1 and "--teacher" in no_checkpoints.output
    assert "Traceback" not in no_tokenizer.output + no_checkpoints.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(data_root, tokenizer_dir, tmp_path):
    result = CliRunner().invoke(cli(), ["bench", "--synthetic", "--task", "lcqmc", "--data-dir",
                                        str(data_root / "lcqmc"), "--student-tokenizer", str(tokenizer_dir),
                                        "--device", "cuda", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "sees no CUDA GPU" in result.output and "Traceback" not in result.output


def test_spinning_warning_names_the_fix(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert "OMP_WAIT_POLICY=PASSIVE" in spinning_warning(2)
    assert spinning_warning(1) is None  # one thread never waits for another
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert spinning_warning(2) is None
