"""Issue 13's sweep: messages name the data and each folder once, outputs land where the command says."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ernie_tiny.bench.benchmark import BenchError, find_task_folder
from ernie_tiny.cli import app


def test_a_missing_dev_file_names_each_folder_once(tmp_path):
    with pytest.raises(BenchError) as err:
        find_task_folder(tmp_path, "reviews", "data")
    assert "(looked for reviews)" in str(err.value)
    with pytest.raises(BenchError) as err:
        find_task_folder(tmp_path, "chnsenticorp", "data")
    assert "(looked for chnsenticorp, chnsenticorp_htl)" in str(err.value)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "tok"
    result = CliRunner().invoke(app, ["segment", "train", "--out", str(out), "--vocab-size", "400",
                                      "--max-sentences", "300"])
    assert result.exit_code == 0, result.output
    return out


def test_segment_stats_names_the_folder_and_writes_beside_the_tokenizer(tokenizer_dir, tmp_path, monkeypatch):
    data = tmp_path / "my_pairs"
    data.mkdir()
    (data / "dev.tsv").write_text("text_a\ttext_b\tlabel\n酒店很干净\t早餐一般\t1\n这是什么？\t那是什么？\t0\n",
                                  encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # the old default wrote runs/segment-stats/ into the current folder
    result = CliRunner().invoke(app, ["segment", "stats", "--tokenizer", str(tokenizer_dir), "--task", "lcqmc",
                                      "--data-dir", str(data)], terminal_width=200)
    assert result.exit_code == 0, result.output
    written = tokenizer_dir / "stats" / "my_pairs-dev.json"
    assert json.loads(written.read_text(encoding="utf-8"))["n_examples"] == 2
    assert f"wrote {written}" in result.output and not (tmp_path / "runs").exists()
    # the table title wraps to the table's width, inside a word when the (xdist worker's) path is long
    shown = "".join(result.output.split())
    assert f"{data}dev:2examples" in shown and "lcqmcdev" not in shown


FIELD = st.text(st.sampled_from(["好", "a", "1", "0", " ", "\r", "\u2028", "\x85", "\ufeff", "é", "\x00", '"']),
                max_size=4)
ROWS = st.lists(st.lists(FIELD, min_size=0, max_size=4).map("\t".join), max_size=4).map("\n".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=50), ROWS.map(lambda rows: "label\ttext_a\n" + rows), ROWS,
                         st.text(max_size=30)))
def test_any_tsv_gives_a_result_or_one_error_line_naming_the_file(tmp_path, content):
    data = tmp_path / "random"
    data.mkdir(exist_ok=True)
    tsv = data / "train.tsv"
    tsv.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    out = tmp_path / "aug.tsv"
    out.unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["augment", "--task", "chnsenticorp", "--data-dir", str(data), "--out", str(out),
                                      "--num-aug", "1", "--no-cache", "--workers", "1", "--device", "cpu"])
    assert "Traceback" not in result.output and result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {tsv}"), result.output
        assert not out.exists()
    else:
        assert out.read_text(encoding="utf-8").startswith("text_a")


# ---- issue 26: the systematic walk over every command's parameters ----------------------------------------
#
# Every numeric option gets 0, -1 and an absurd value; every path option a missing path, a directory, an empty
# file and a truncated file of the right kind. Each must end with exit code != 0, no traceback and one to three
# lines naming the option or the file, unless the table below documents why the value is a valid request.
# Bounds are declared on the options (typer min=/max=, callback=positive; exists/file_okay/dir_okay), so
# almost every case stops while the options are parsed, before any model or data is touched.

import shutil  # noqa: E402
import typing  # noqa: E402
from pathlib import Path  # noqa: E402

import typer  # noqa: E402

from ernie_tiny.commands.options import positive  # noqa: E402

ROOT = typer.main.get_command(app)
ABSURD = {int: 10 ** 12, float: 1e300}


def leaf_commands(group=ROOT, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from leaf_commands(command, path + (name,))
        else:
            yield path + (name,), command


def base_type(annotation):
    """int, float, Path, ... under Optional[...] / list[...] / X | None."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is not None and args:
        return base_type(args[0])
    return annotation


def params_of(kind: type) -> list[tuple[tuple[str, ...], object]]:
    return [(argv, param) for argv, command in leaf_commands() for param in command.params
            if base_type(param.type_descriptor.annotation) is kind and param.opts[0].startswith("--")]


def option_id(case) -> str:
    argv, param = case[:2]
    return " ".join(argv) + " " + param.opts[0] + ("" if len(case) == 2 else f"={case[2]}")


# Values inside the declared bounds that are deliberate, valid requests (option name -> values -> why).
ACCEPTED_NUMBERS = {
    "--seed": {0: "any seed in 0..2**32-1"},
    "--threads": {0: "augment: 0 is torch's default thread count"},
    "--steps-intermediate": {0: "0 skips the intermediate stage", ABSURD[int]: "a long run is a choice"},
    "--steps-prediction": {0: "0 skips the prediction stage (--stage intermediate)", ABSURD[int]: "a long run"},
    "--augment": {0: "0: no augmentation (the default)", ABSURD[int]: "bounded by the data set's size x N"},
    "--warmup-batches": {0: "0: no warm-up batch"},
    "--data-workers": {0: "0: masking in the training process"},
    "--tokenizer-workers": {0: "0: tokenization in the predicting process (the default)"},
    "--mlm-context": {0: "0: the masked word alone", ABSURD[int]: "the whole text is the most context there is"},
    "--tolerance": {0: "0: bit-exact parity", ABSURD[float]: "a tolerance nothing fails"},
    "--max-wait-ms": {0: "0: a batch never waits", ABSURD[float]: "bounded by --max-batch arriving"},
    "--graceful-timeout": {0: "0: stop without waiting", ABSURD[float]: "wait for every request in flight"},
    "--weight-decay": {0: "0: no decay", ABSURD[float]: "a valid, if useless, optimiser setting"},
    "--p-unk": {0: "0 turns the strategy off"}, "--p-pos": {0: "0 turns the strategy off"},
    "--p-mlm": {0: "0 turns the strategy off"}, "--p-ngram": {0: "0 turns the strategy off"},
    "--warmup-ratio": {0: "0: no warm-up"}, "--feature-warmup": {0: "0: full weight from the first step"},
}
for name in ("--soft-weight", "--hard-weight", "--hidden-weight", "--attention-weight", "--embedding-weight"):
    ACCEPTED_NUMBERS[name] = {0: "0 turns the loss term off", ABSURD[float]: "a weight is relative to the others"}
# Sizes and counts with no natural upper bound: a huge value is a long run or a big batch, which the command
# checks against the model or the data once it has them (e.g. --max-len against the model's positions).
for name in ("--max-steps", "--steps", "--batch-size", "--max-len", "--eval-every", "--save-every", "--log-every",
             "--limit", "--eval-limit", "--max-texts", "--max-chars", "--max-batch", "--runs", "--warmup-batches",
             "--latency-examples", "--accuracy-examples", "--parity-examples", "--grad-accum", "--eval-examples",
             "--num-aug", "--ngram-min", "--ngram-max", "--mlm-top-k", "--workers", "--vocab-size",
             "--max-piece-chars", "--max-sentences", "--data-workers", "--max-batch-tokens", "--lr", "--lr-prediction",
             "--temperature", "--feature-ratio", "--max-minutes", "--pretrain-minutes", "--teacher-minutes",
             "--general-minutes", "--student-minutes"):
    ACCEPTED_NUMBERS.setdefault(name, {})[ABSURD[int] if name not in ("--lr", "--lr-prediction", "--temperature",
                                        "--feature-ratio") and not name.endswith("-minutes")
                                        else ABSURD[float]] = "no natural bound"


def declared_rejection(param, value) -> bool:
    info = param.type_descriptor.parameter_info
    return ((info.min is not None and value < info.min) or (info.max is not None and value > info.max)
            or (info.callback is positive and not value > 0))


NUMBER_CASES = [(argv, param, value) for kind in (int, float) for argv, param in params_of(kind)
                for value in (0, -1, ABSURD[kind])]


def assert_named_in_a_short_error(result, *names: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert 1 <= len(lines) <= 3, result.output
    assert any(name in result.output for name in names), (names, result.output)


@pytest.mark.parametrize("case", NUMBER_CASES, ids=option_id)
def test_every_numeric_option_refuses_0_minus_1_and_absurd_values_or_documents_them(case):
    argv, param, value = case
    option = param.opts[0]
    if not declared_rejection(param, value):
        assert value in ACCEPTED_NUMBERS.get(option, {}), \
            f"{' '.join(argv)} {option} {value}: declare a bound on the option, or document why it is valid"
        return
    # the option first: click checks the given options in the order given, before any missing required one
    result = CliRunner().invoke(app, [*argv, option, str(value)])
    assert result.exit_code == 2, result.output
    assert_named_in_a_short_error(result, f"'{option}'")


PATH_KINDS = ("missing", "directory", "empty-file", "truncated")


def path_role(param) -> str:
    info = param.type_descriptor.parameter_info
    if info.exists:
        return "in-dir" if not info.file_okay else "in-file" if not info.dir_okay else "in-any"
    if not info.file_okay:
        return "out-dir"
    if not info.dir_okay:
        return "out-file"
    return "checked-by-command"


# Path options whose kind the command itself checks (an export folder or a .onnx file in one).
CHECKED_BY_COMMAND = {("predict", "--model"), ("serve", "--model"), ("embed", "--model")}


def test_every_path_option_declares_what_it_takes():
    undeclared = [option_id((argv, param)) for argv, param in params_of(Path)
                  if path_role(param) == "checked-by-command" and (argv[-1], param.opts[0]) not in CHECKED_BY_COMMAND]
    assert not undeclared, f"give these exists=/file_okay=/dir_okay= (or check them in the command): {undeclared}"


PATH_CASES = [(argv, param, kind) for argv, param in params_of(Path) for kind in PATH_KINDS]


def cut_in_half(path: Path) -> None:
    """Keep the first half of the bytes; a text file is cut inside a character, as a copy that stopped there."""
    data = path.read_bytes()
    middle = len(data) // 2
    if path.suffix in (".txt", ".tsv", ".dict"):
        while middle < len(data) and not 0x80 <= data[middle] < 0xC0:  # a UTF-8 continuation byte
            middle += 1
    path.write_bytes(data[:middle])


def truncated_copy(source: Path, target: Path) -> Path:
    """``source`` cut short: a file, a task folder's .tsv files, or another folder's biggest file."""
    if source.is_dir():
        shutil.copytree(source, target)
        victims = sorted(target.glob("*.tsv")) or [max((p for p in target.rglob("*") if p.is_file()),
                                                       key=lambda p: p.stat().st_size)]
    else:
        shutil.copyfile(source, target)
        victims = [target]
    for victim in victims:
        cut_in_half(victim)
    return target


@pytest.fixture(scope="module")
def kit(tmp_path_factory, tokenizer_dir):
    """Small inputs of every kind the commands read: a checkpoint, an export, a tokenizer, task data, texts."""
    import pickle

    from ernie_tiny.tasks import Example
    from ernie_tiny.deploy.export import ExportOptions, export_checkpoint
    from ernie_tiny.tokenization.load import load_tokenizer
    from test_export import REVIEWS, make_checkpoint

    root = tmp_path_factory.mktemp("walk")
    checkpoint = make_checkpoint(root / "ckpt")
    export = export_checkpoint(checkpoint, root / "onnx", ExportOptions(),
                               [Example(text, None, label) for label, text in REVIEWS[:4]]).directory
    data = root / "data"
    data.mkdir()
    rows = "label\ttext_a\n" + "".join(f"{label}\t{text}\n" for label, text in REVIEWS)
    for split in ("train", "dev", "test"):
        (data / f"{split}.tsv").write_text(rows, encoding="utf-8")
    text = root / "texts.txt"
    text.write_text("".join(f"{t}\n" for _, t in REVIEWS), encoding="utf-8")
    wordseg = root / "dict.wordseg.pickle"
    wordseg.write_bytes(pickle.dumps({"酒店": 10, "干净": 5}, protocol=2))
    user_dict = root / "user.dict"
    user_dict.write_text("酒店很好 10 n\n干净整洁 5 a\n", encoding="utf-8")
    char_tokenizer = root / "char-tokenizer"
    char_tokenizer.mkdir()
    load_tokenizer(checkpoint).save(str(char_tokenizer))
    return {"checkpoint": checkpoint, "export": export, "tokenizer": tokenizer_dir, "data": data, "text": text,
            "wordseg": wordseg, "user_dict": user_dict, "vocab": char_tokenizer / "vocab.txt",
            "char_tok": char_tokenizer}


# What a "truncated file of the right kind" is cut from, per option (folders: their biggest file is cut).
RIGHT_KIND = {"--init": "checkpoint", "--teacher": "checkpoint", "--mlm-teacher": "checkpoint",
              "--student-init": "checkpoint", "--student": "checkpoint", "--tokenizer": "tokenizer",
              "--teacher-tokenizer": "char_tok", "--student-tokenizer": "tokenizer", "--data-dir": "data",
              "--corpus": "text", "--dev-corpus": "text", "--parity-file": "text", "--file": "text",
              "--user-dict": "user_dict", "--wordseg-dict": "wordseg", "--char-vocab": "vocab"}
MODEL_KIND = {"export": "checkpoint", "predict": "export", "serve": "export", "embed": "export"}
FAST = ["--device", "cpu"]


def base_args(argv: tuple[str, ...], kit: dict, out: Path) -> dict[str, list[str]]:
    """Valid values for every other option a command needs, and limits that keep an accepted run short."""
    train = {"--max-len": ["32"], "--batch-size": ["2"], "--device": ["cpu"]}
    table = {
        ("pretrain",): {"--out": [str(out)], "--preset": ["teacher-micro"], "--corpus": [str(kit["text"])],
                        "--max-steps": ["1"], "--eval-every": ["1"],
                        "--save-every": ["1"], "--eval-examples": ["4"], "--data-workers": ["0"], **train},
        ("augment",): {"--task": ["chnsenticorp"], "--out": [str(out / "aug.tsv")], "--data-dir": [str(kit["data"])],
                       "--num-aug": ["1"], "--no-cache": [], "--workers": ["1"], "--device": ["cpu"]},
        ("distill",): {"--teacher": [str(kit["checkpoint"])], "--out": [str(out)], "--task": ["chnsenticorp"],
                       "--data-dir": [str(kit["data"])], "--student-tokenizer": ["char"],
                       "--student-preset": ["student-micro"], "--stage": ["prediction"], "--steps-prediction": ["1"],
                       "--eval-every": ["1"], "--limit": ["4"], "--eval-limit": ["4"], **train},
        ("distill-general",): {"--teacher": [str(kit["checkpoint"])], "--out": [str(out)],
                               "--student-tokenizer": ["char"], "--student-preset": ["student-micro"],
                               "--steps": ["1"], "--max-texts": ["8"], **train},
        ("export",): {"--model": [str(kit["checkpoint"])], "--out": [str(out)], "--parity-examples": ["4"]},
        ("predict",): {"--model": [str(kit["export"])], "--text": ["好"]},
        ("serve",): {"--model": [str(kit["export"])], "--port": ["1"]},
        ("embed",): {"--model": [str(kit["export"])], "--file": [str(kit["text"])], "--out": [str(out)]},
        ("bench",): {"--task": ["chnsenticorp"], "--teacher": [str(kit["checkpoint"])],
                     "--student": [str(kit["checkpoint"])], "--data-dir": [str(kit["data"])], "--runs": ["1"],
                     "--warmup-batches": ["0"], "--latency-examples": ["2"], "--accuracy-examples": ["2"],
                     "--no-char-length": [], "--out": [str(out)], "--device": ["cpu"]},
        ("teacher", "finetune"): {"--out": [str(out)], "--task": ["chnsenticorp"], "--data-dir": [str(kit["data"])],
                                  "--preset": ["teacher-micro"], "--max-steps": ["1"], "--eval-every": ["1"],
                                  "--limit": ["4"], "--eval-limit": ["4"], **train},
        ("segment", "train"): {"--out": [str(out)], "--vocab-size": ["100"], "--max-sentences": ["50"],
                               "--corpus": [str(kit["text"])]},
        ("segment", "encode"): {"--tokenizer": [str(kit["tokenizer"])], "--text": ["好"]},
        ("segment", "stats"): {"--tokenizer": [str(kit["tokenizer"])], "--task": ["chnsenticorp"],
                               "--data-dir": [str(kit["data"])], "--split": ["dev"], "--out": [str(out / "s.json")]},
        ("quickstart",): {"--out": [str(out)]},
    }
    return dict(table[argv])


def content_args(argv, option: str, value: Path, kit: dict, out: Path) -> list[str]:
    args = base_args(argv, kit, out)
    args[option] = [str(value)]
    if option == "--init":
        args.pop("--preset", None)  # --init instead of --preset
    if argv == ("bench",) and option.endswith("-tokenizer"):
        args = {k: v for k, v in args.items() if k not in ("--teacher", "--student")}
        args.update({"--synthetic": [], "--teacher-preset": ["teacher-micro"], "--student-preset": ["student-micro"],
                     "--student-tokenizer": [str(kit["tokenizer"])], option: [str(value)]})
    if argv == ("segment", "encode") and option == "--file":
        args.pop("--text")
    return [*argv, *(item for name, values in args.items() for item in (name, *values))]


# Right-kind inputs a command deliberately accepts (option -> kinds -> why).
ACCEPTED_PATHS: dict[tuple[tuple[str, ...], str], dict[str, str]] = {
    (("segment", "train"), "--user-dict"): {"empty-file": "an empty jieba user dictionary adds no words"},
}


@pytest.mark.parametrize("case", PATH_CASES, ids=option_id)
def test_every_path_option_refuses_missing_wrong_kind_empty_and_truncated_inputs(case, kit, tmp_path):
    argv, param, kind = case
    option, role = param.opts[0], path_role(param)
    if role.startswith("out") and (kind == "missing" or (kind == "directory") == (role == "out-dir")):
        return  # documented: an output path is created, an existing one of the right kind replaced
    if role.startswith("out") and kind == "truncated":
        return  # documented: an output is written, never read
    value = {"missing": tmp_path / "no-such-path", "directory": tmp_path / "a-folder",
             "empty-file": tmp_path / "empty.txt"}.get(kind)
    if kind == "directory":
        value.mkdir()
    elif kind == "empty-file":
        value.write_bytes(b"")
    elif kind == "truncated":
        source = MODEL_KIND[argv[-1]] if option == "--model" else RIGHT_KIND[option]
        value = truncated_copy(kit[source], tmp_path / f"cut-{kit[source].name}")
    declared = (kind == "missing" and role.startswith("in")) or (kind == "directory" and role == "in-file") \
        or (kind == "empty-file" and role in ("in-dir", "out-dir")) or (kind == "directory" and role == "out-file")
    if declared:  # stops while the options are parsed
        result = CliRunner().invoke(app, [*argv, option, str(value)])
        assert result.exit_code == 2, result.output
        assert_named_in_a_short_error(result, f"'{option}'")
        assert str(value) in result.output, result.output
        return
    if kind in ACCEPTED_PATHS.get((argv, option), {}):
        return
    result = CliRunner().invoke(app, content_args(argv, option, value, kit, tmp_path / "out"), terminal_width=250)
    assert_named_in_a_short_error(result, str(value), option)
