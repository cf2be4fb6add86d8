"""The command line as a user meets it."""

import subprocess
import sys

from typer.testing import CliRunner

from ernie_tiny.cli import app


def test_help_lists_every_part():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("quickstart", "teacher", "segment", "augment", "distill", "distill-general", "export", "predict",
                    "bench"):
        assert command in result.output, command
    teacher = CliRunner().invoke(app, ["teacher", "--help"])
    assert "convert" in teacher.output and "finetune" in teacher.output


def test_python_dash_m_runs_the_same_app():
    done = subprocess.run([sys.executable, "-m", "ernie_tiny", "segment", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and "stats" in done.stdout


def test_bad_input_is_one_line_not_a_traceback(tmp_path):
    (tmp_path / "train.tsv").write_text("label\ttext_a\n1\t很好\n2\t一般\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["teacher", "finetune", "--preset", "teacher-micro", "--task", "chnsenticorp",
                                      "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), "--max-steps", "1"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "train.tsv:3" in result.output
