"""The quickstart on the micro scale, end to end: every artefact exists and loads."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ernie_tiny.deploy.predict import Predictor
from ernie_tiny.checkpoint import load_pretrained
from ernie_tiny.cli import app
from ernie_tiny.quickstart import (QuickstartConfig, Scale, StageMinutes, StepFailed, plan_steps, read_comparison,
                                   run_quickstart)


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
    pretrained = json.loads((out / "pretrain" / "metrics.json").read_text(encoding="utf-8"))
    assert 0.0 <= pretrained["dev"]["mlm_accuracy"] <= 1.0
    general = load_pretrained(out / "general" / "student")
    assert general.config.preset == "student-micro" and general.meta.tokenizer_kind == "subword"
    student_run = json.loads((out / "student" / "metrics.json").read_text(encoding="utf-8"))
    assert student_run["config"]["student_init"] == str(out / "general" / "student")
    student_metrics = json.loads((out / "student" / "metrics.json").read_text(encoding="utf-8"))
    assert 0.0 <= student_metrics["student"]["dev"]["accuracy"] <= 1.0
    for variant in ("fp32", "int8"):
        predictions = Predictor.load(out / "onnx" / variant).predict(["质量很好，非常满意", "太差了，再也不买"])
        assert [p.label for p in predictions] and all(p.label in student.meta.labels for p in predictions)
        assert all(abs(sum(p.probabilities.values()) - 1.0) < 1e-5 for p in predictions)
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "| teacher-micro (teacher) | torch fp32 |" in summary
    assert "ernie-tiny distill --teacher" in summary
    comparison = read_comparison(out)
    assert None not in (comparison.teacher, comparison.scratch, comparison.student)
    assert f"Pretraining gain: {comparison.pretraining_gain_points:+.2f} points" in summary
    assert f"keeps {comparison.retention_pct:.1f}% of the teacher" in summary


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


def test_the_real_recipe_pretrains_compares_with_scratch_and_gives_each_stage_its_budget(tmp_path):
    config = QuickstartConfig(out_dir=str(tmp_path), scale="real", device="cuda",
                              minutes=StageMinutes(pretrain=6.0))
    steps = {step.name: step.argv for step in plan_steps(config)}
    assert list(steps) == ["tokenizer", "pretrain", "teacher", "teacher-scratch", "general", "student", "onnx-fp32",
                           "onnx-fp16", "bench"]

    def option(name: str, flag: str) -> str:
        return steps[name][steps[name].index(flag) + 1]

    assert option("pretrain", "--preset") == "ernie-1.0-base" and option("pretrain", "--max-minutes") == "6"
    assert option("teacher", "--init") == str(tmp_path / "pretrain" / "best")
    assert option("teacher-scratch", "--preset") == "ernie-1.0-base"
    assert option("teacher", "--max-minutes") == option("teacher-scratch", "--max-minutes") == "1"
    assert option("general", "--student-preset") == "ernie-tiny"
    assert option("general", "--student-tokenizer") == str(tmp_path / "tokenizer")
    assert option("student", "--student-init") == str(tmp_path / "general" / "student")
    assert int(option("student", "--augment")) >= 1
    assert all(option(name, "--device") == "cuda" for name in ("pretrain", "teacher", "general", "student"))
    assert "--fp16" in steps["onnx-fp16"] and option("bench", "--device") == "cuda"
    with pytest.raises(ValueError, match="--teacher-minutes must be positive"):
        StageMinutes(teacher=0)
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        QuickstartConfig(scale="huge")
    assert "--max-minutes" not in " ".join(a for argv in plan_steps(QuickstartConfig(scale=Scale.small)) for a in argv.argv)


def test_an_interrupted_stage_resumes_and_force_starts_it_over(tmp_path):
    config = QuickstartConfig(out_dir=str(tmp_path), scale="micro")
    ran: list[list[str]] = []
    markers = {tuple(step.argv): step.done_marker for step in plan_steps(config)}

    def fake_command(argv: list[str]) -> None:  # writes what a finished step leaves behind
        ran.append(argv)
        marker = Path(markers[tuple(a for a in argv if a != "--resume")])
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}", encoding="utf-8")

    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "last.pt").write_bytes(b"state")  # left by an interrupted teacher run
    results = run_quickstart(config, fake_command, echo=lambda line: None)
    status = {r.name: r.status for r in results}
    assert status["teacher"] == "resumed" and status["teacher-scratch"] == "ran"
    assert [argv for argv in ran if "--resume" in argv] == [next(a for a in ran if a[:2] == ["teacher", "finetune"])]
    ran.clear()
    forced = run_quickstart(QuickstartConfig(out_dir=str(tmp_path), scale="micro", force=True), fake_command,
                            echo=lambda line: None)
    assert [r.status for r in forced] == ["ran"] * len(forced) and not any("--resume" in a for a in ran)
    assert not (tmp_path / "teacher" / "last.pt").exists()  # --force removed the old run's folder


def test_a_step_that_writes_nothing_stops_the_quickstart(tmp_path):
    with pytest.raises(StepFailed, match="step tokenizer finished without writing"):
        run_quickstart(QuickstartConfig(out_dir=str(tmp_path), scale="micro"), lambda argv: None,
                       echo=lambda line: None)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_the_real_scale_on_a_cpu_stops_with_one_line_and_writes_nothing(tmp_path):
    result = CliRunner().invoke(app, ["quickstart", "--scale", "real", "--out", str(tmp_path / "qs")])
    assert result.exit_code == 1
    assert "--scale real needs a CUDA GPU" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "qs").exists()


# Step options that make the real plan a few steps on a CPU; the models, tokenizer and commands stay the real ones.
REHEARSAL_VALUES = {"--max-steps": "3", "--steps": "3", "--steps-prediction": "3", "--batch-size": "8",
                    "--eval-every": "3", "--save-every": "3", "--eval-examples": "16", "--data-workers": "2",
                    "--runs": "1", "--latency-examples": "16", "--device": "cpu"}
REHEARSAL_EXTRA = {"teacher": ["--limit", "64", "--eval-limit", "32"],
                   "teacher-scratch": ["--limit", "64", "--eval-limit", "32"],
                   "student": ["--limit", "64", "--eval-limit", "32"], "general": ["--max-texts", "256"],
                   "bench": ["--accuracy-examples", "32"]}


def rehearsal_argv(argv: list[str], name: str) -> list[str]:
    """A planned step's command with the rehearsal's values and no time budget."""
    out, index = [], 0
    while index < len(argv):
        option = argv[index]
        if option == "--max-minutes":
            index += 2
            continue
        out.append(option)
        if option in REHEARSAL_VALUES and index + 1 < len(argv):
            out.append(REHEARSAL_VALUES[option])
            index += 1
        index += 1
    return out + REHEARSAL_EXTRA.get(name, [])


@pytest.mark.slow  # real-size models on a CPU: about 5 minutes on 2 cores
def test_every_step_of_the_real_recipe_runs_at_the_real_presets(tmp_path):
    """What `quickstart --scale real` runs (ernie-1.0-base pretraining with 2 masking workers, fine-tuning from
    it and from scratch, general and task distillation into ernie-tiny with a 50k subword tokenizer, fp32 and
    fp16 exports, the bench), each step a few steps at the real shapes on the CPU: a GPU session then spends
    its minutes measuring, not finding a broken step."""
    steps = plan_steps(QuickstartConfig(out_dir=str(tmp_path / "real"), scale=Scale.real, device="cpu"))
    assert [s.name for s in steps] == ["tokenizer", "pretrain", "teacher", "teacher-scratch", "general", "student",
                                       "onnx-fp32", "onnx-fp16", "bench"]
    for step in steps:
        argv = rehearsal_argv(list(step.argv), step.name)
        completed = subprocess.run([sys.executable, "-m", "ernie_tiny", *argv], capture_output=True, text=True)
        assert completed.returncode == 0, f"{step.name}: {' '.join(argv)}\n{completed.stderr[-2000:]}"
    assert (tmp_path / "real" / "onnx" / "fp16" / "model.onnx").is_file()
    assert (tmp_path / "real" / "bench" / "bench.json").is_file()
