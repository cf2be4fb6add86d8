"""The quickstart on the micro scale, end to end: every artefact exists and loads."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ernie_tiny.deploy.predict import Predictor
from ernie_tiny.checkpoint import load_pretrained
from ernie_tiny.cli import app
from ernie_tiny.quickstart import QuickstartConfig, plan_steps


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    result = CliRunner().invoke(app, ["quickstart", "--scale", "micro", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def quickstart_dir(quickstart_run):
    return quickstart_run[0]


def test_the_console_shows_bracketed_words_as_written(quickstart_run):
    out, output = quickstart_run
    assert f"[tokenizer] $ ernie-tiny segment train --vocab-size 2000 --out {out / 'tokenizer'}" in output
    assert "[pass]" in output  # the parity lines of the export steps and of the summary
    assert "[torch fp32]" in output  # the bench caption's reference variant
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert summary.strip().splitlines()[0] in output and "[pass]" in summary


def test_every_artefact_exists_and_loads(quickstart_dir):
    out = quickstart_dir
    for metrics in ("teacher/metrics.json", "student/metrics.json", "bench/bench.json", "quickstart.json",
                    "onnx/fp32/parity.json", "onnx/int8/parity.json"):
        assert json.loads((out / metrics).read_text(encoding="utf-8")), metrics
    for picture in ("teacher/loss_curve.png", "student/loss_curve.png", "bench/bench.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG", picture
    student = load_pretrained(out / "student" / "best")
    assert student.config.preset == "student-micro" and student.meta.tokenizer_kind == "subword"
    teacher = load_pretrained(out / "teacher" / "best")
    assert teacher.config.preset == "teacher-micro" and teacher.meta.tokenizer_kind == "char"
    student_metrics = json.loads((out / "student" / "metrics.json").read_text(encoding="utf-8"))
    assert 0.0 <= student_metrics["student"]["dev"]["accuracy"] <= 1.0
    for variant in ("fp32", "int8"):
        predictions = Predictor.load(out / "onnx" / variant).predict(["质量很好，非常满意", "太差了，再也不买"])
        assert [p.label for p in predictions] and all(p.label in student.meta.labels for p in predictions)
        assert all(abs(sum(p.probabilities.values()) - 1.0) < 1e-5 for p in predictions)
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| teacher-micro (teacher) | torch fp32 |" in summary
    assert "ernie-tiny distill --teacher" in summary


def test_rerun_reuses_finished_steps(quickstart_dir):
    result = CliRunner().invoke(app, ["quickstart", "--scale", "micro", "--out", str(quickstart_dir)])
    assert result.exit_code == 0, result.output
    steps = json.loads((quickstart_dir / "quickstart.json").read_text(encoding="utf-8"))["steps"]
    assert [s["status"] for s in steps] == ["reused"] * len(plan_steps(QuickstartConfig(scale="micro")))


def test_interrupted_training_step_resumes(tmp_path):
    steps = plan_steps(QuickstartConfig(out_dir=str(tmp_path), scale="micro"))
    teacher = next(s for s in steps if s.name == "teacher")
    assert teacher.resume_state == str(tmp_path / "teacher" / "last.pt")
    assert teacher.done_marker == str(tmp_path / "teacher" / "metrics.json")


def test_onnx_prediction_from_the_command_line_needs_no_torch(quickstart_dir):
    code = ("import sys; sys.argv = ['ernie-tiny', 'predict', '--model', sys.argv[1], '--text', '很好']\n"
            "from ernie_tiny.console import main\n"
            "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code, str(quickstart_dir / "onnx" / "int8")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    labels = load_pretrained(quickstart_dir / "student" / "best").meta.labels
    assert json.loads(result.stdout.strip().splitlines()[-1])["label"] in labels
