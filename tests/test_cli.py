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


# ---- every command, as a user meets it: help text, --device, errors, imports -----------------------------

import ast  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import typer  # noqa: E402

COMMANDS_DIR = Path(__file__).resolve().parents[1] / "ernie_tiny" / "commands"


def every_command(group=None, path: tuple[str, ...] = ()):
    """``(argv prefix, click command)`` of every leaf command of the app."""
    group = typer.main.get_command(app) if group is None else group
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer's own click: not a click.Group)
            yield from every_command(command, path + (name,))
        else:
            yield path + (name,), command


def flat(text: str) -> str:
    """Words and spaces only: a help line wrapped at a space reads as one (one wrapped after a hyphen does not:
    a copied `--max-` / `batch` is no option)."""
    return " ".join(text.split())


@pytest.mark.parametrize("argv", [argv for argv, _ in every_command()], ids=" ".join)
def test_help_keeps_every_word_and_option_name_at_80_columns(argv):
    command = dict(every_command())[argv]
    result = CliRunner().invoke(app, [*argv, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    shown = flat(result.output)
    for param in command.params:
        for name in getattr(param, "opts", []):
            assert re.search(rf"(^|[\s,/]){re.escape(name)}([\s,=/]|$)", result.output, re.M), (argv, name)
        help_text = getattr(param, "help", None)
        if help_text:  # bracketed words ([default: ...], [UNK], [freq]) and all, as written
            assert flat(help_text) in shown, (argv, param.name, help_text)
        default = getattr(param.default, "value", param.default)  # an Enum default shows its value
        if getattr(param, "show_default", None) is not False and isinstance(default, (int, float, str)) \
                and not isinstance(default, bool) and default != "":
            assert re.search(rf"\[default: {re.escape(str(default))}[];]", shown), (argv, param.name)
    assert max(len(line) for line in result.output.splitlines()) <= 80, result.output


def device_commands() -> dict:
    return {argv: command for argv, command in every_command() if any(p.name == "device" for p in command.params)}


def minimal_args(argv: tuple[str, ...], tmp: Path) -> list[str]:
    """The fewest options each command with --device needs to get to its device check (input paths exist:
    their kind is checked when the options are parsed, before the device)."""
    out = tmp / "out"
    (tmp / "teacher").mkdir(exist_ok=True)
    (tmp / "in.txt").write_text("好\n", encoding="utf-8")
    return {
        ("teacher", "finetune"): ["--preset", "teacher-micro", "--out", str(out)],
        ("distill",): ["--teacher", str(tmp / "teacher"), "--out", str(out)],
        ("distill-general",): ["--teacher", str(tmp / "teacher"), "--out", str(out)],
        ("augment",): ["--task", "reviews", "--out", str(out / "aug.tsv")],
        ("bench",): ["--task", "reviews", "--synthetic", "--out", str(out)],
        ("predict",): ["--model", str(tmp / "model"), "--text", "好", "--output", str(out / "p.jsonl")],
        ("embed",): ["--model", str(tmp / "model"), "--file", str(tmp / "in.txt"), "--out", str(out)],
        ("serve",): ["--model", str(tmp / "model")],
        ("pretrain",): ["--preset", "teacher-micro", "--out", str(out)],
        ("quickstart",): ["--scale", "micro", "--out", str(out)],
    }[argv]


def test_the_device_commands_are_the_expected_ones():
    assert {" ".join(a) for a in device_commands()} >= {"teacher finetune", "distill", "distill-general", "augment",
                                                        "bench", "predict"}


@pytest.mark.parametrize("argv", list(device_commands()), ids=" ".join)
def test_every_device_option_defaults_to_auto(argv):
    device = next(p for p in device_commands()[argv].params if p.name == "device")
    assert device.default == "auto"


def bad_devices() -> list[str]:
    import torch

    bad = ["tpu", "cuda:99"]
    if not torch.cuda.is_available():
        bad.append("cuda")
    return bad


@pytest.mark.parametrize("device", bad_devices())
@pytest.mark.parametrize("argv", list(device_commands()), ids=" ".join)
def test_a_wrong_device_is_one_line_and_writes_nothing(argv, device, tmp_path):
    result = CliRunner().invoke(app, [*argv, *minimal_args(argv, tmp_path), "--device", device])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith(f"error: --device {device}: "), result.output
    assert not (tmp_path / "out").exists()  # e.g. no out/tokenizer/ from teacher finetune


def test_no_command_module_imports_the_cli():
    for module in COMMANDS_DIR.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "ernie_tiny.cli" not in imported, module.name


def test_every_command_reports_errors_through_the_one_handler():
    """Each command module ends on bad input through commands/errors.py, never its own except + print."""
    for module in COMMANDS_DIR.glob("*.py"):
        if module.name in ("__init__.py", "errors.py") or module.name.endswith("options.py"):  # no commands
            continue
        source = module.read_text(encoding="utf-8")
        tree = ast.parse(source)
        assert "command_errors" in source, f"{module.name} does not use commands.errors"
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                caught = ast.unparse(node.type)
                reraises = any(isinstance(inner, ast.Raise) and not (
                    isinstance(inner.exc, ast.Call) and "Exit" in ast.unparse(inner.exc.func)) for inner in node.body)
                assert reraises or not re.search(r"\b(ValueError|OSError|RuntimeError|FileNotFoundError)\b", caught), \
                    f"{module.name}:{node.lineno}: catches {caught} and ends the command itself"


def test_the_quickstart_command_imports_without_the_cli():
    code = "import sys, ernie_tiny.commands.quickstart; print('ernie_tiny.cli' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_an_error_message_keeps_its_brackets(tmp_path):
    (tmp_path / "train.tsv").write_text("label\ttext_a\n1\t很好\n", encoding="utf-8")
    (tmp_path / "[no tokenizer]").mkdir()  # exists, so that the command itself reads it (and fails)
    result = CliRunner().invoke(app, ["segment", "stats", "--tokenizer", str(tmp_path / "[no tokenizer]"),
                                      "--task", "chnsenticorp", "--data-dir", str(tmp_path), "--split", "train"])
    assert result.exit_code == 1
    assert "[no tokenizer]" in result.output and len(result.output.strip().splitlines()) == 1


def groups_and_commands():
    """argv of the app, each group and each command."""
    yield ()
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        yield (name,)
        if hasattr(command, "commands"):
            yield from ((name, sub) for sub in command.commands)


@pytest.mark.parametrize("argv", list(groups_and_commands()), ids=lambda argv: " ".join(argv) or "ernie-tiny")
def test_every_help_has_an_example_and_no_word_split_at_a_hyphen(argv):
    result = CliRunner().invoke(app, [*argv, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "Example: ernie-tiny" in result.output, result.output
    for line in result.output.splitlines():
        assert not re.search(r"[\w/.]-$", line), f"a word split at its hyphen: {line!r}"


def test_choices_are_listed_and_the_version_is_printed():
    precision = CliRunner().invoke(app, ["pretrain", "--help"], terminal_width=80).output
    assert "--precision <auto|fp32|bf16|fp16>" in precision
    assert "one of: ernie-1.0-base, ernie-tiny," in flat(precision)
    version = CliRunner().invoke(app, ["--version"])
    from ernie_tiny import __version__

    assert version.exit_code == 0 and version.output == f"ernie-tiny {__version__}\n"
