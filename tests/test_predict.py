"""onnxruntime-only inference: same answers as torch, batch-size independent, JSON lines, no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import torch
import typer
from typer.testing import CliRunner

from ernie_tiny.deploy.export import ExportOptions, export_checkpoint
from ernie_tiny.deploy.predict import (Predictor, char_tags_from_token_tags, entities_from_tags, read_text_file,
                                      softmax)
from ernie_tiny.checkpoint import load_pretrained, save_pretrained
from ernie_tiny.commands.predict import predict as predict_command
from ernie_tiny.tokenization.encoding import Encoding, TokenSpan, pad_to_arrays
from ernie_tiny.model import ErnieConfig, build_model
from ernie_tiny.tasks import MSRA_TAGS, Example
from ernie_tiny.tokenization.char import CharTokenizer

TEXTS = ["房间很干净，服务也很周到", "隔音太差了，晚上根本睡不着", "位置方便，离地铁站很近",
         "早餐品种太少", "性价比高，前台态度很好，下次还来", "空调坏了也没人修", "北京大学在海淀区"]


def make_export(folder: Path, head: str, num_labels: int, task: str, labels: list[str]) -> tuple[Path, Path]:
    tokenizer = CharTokenizer.from_texts(TEXTS)
    torch.manual_seed(1)
    model = build_model(ErnieConfig.from_preset("student-micro", vocab_size=tokenizer.vocab_size), head, num_labels)
    checkpoint = save_pretrained(model, folder / f"{head}-ckpt", tokenizer=tokenizer, task=task, labels=labels)
    result = export_checkpoint(checkpoint, folder / f"{head}-onnx", ExportOptions(),
                               [Example(t, None, 0) for t in TEXTS])
    return checkpoint, result.directory


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> tuple[Path, Path]:
    return make_export(tmp_path_factory.mktemp("predict"), "sequence_classification", 2, "chnsenticorp",
                       ["negative", "positive"])


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> tuple[Path, Path]:
    return make_export(tmp_path_factory.mktemp("predict-ner"), "token_classification", 7, "msra-ner",
                       list(MSRA_TAGS))


def test_predictions_match_the_torch_model(classifier):
    checkpoint, folder = classifier
    loaded = load_pretrained(checkpoint)
    inputs = TEXTS[:4] + [("酒店不错", "服务很好")]
    predictions = Predictor.load(folder).predict(inputs)
    encodings = loaded.tokenizer.encode_batch([(t, None) if isinstance(t, str) else t for t in inputs], max_len=128)
    arrays = pad_to_arrays(encodings, pad_id=loaded.tokenizer.pad_id)
    with torch.no_grad():
        logits = loaded.model.eval()(**{k: torch.from_numpy(v) for k, v in arrays.items()}).logits.numpy()
    expected = softmax(logits)
    for prediction, probabilities in zip(predictions, expected):
        assert prediction.label == ["negative", "positive"][int(probabilities.argmax())]
        assert [prediction.probabilities["negative"], prediction.probabilities["positive"]] == \
            pytest.approx(probabilities.tolist(), abs=1e-4)
    assert predictions[-1].text_b == "服务很好"


def test_batch_size_does_not_change_answers(classifier):
    predictor = Predictor.load(classifier[1] / "model.onnx")  # a .onnx path works as well as the folder
    one = predictor.predict(TEXTS, batch_size=1)
    many = predictor.predict(TEXTS, batch_size=32)
    for a, b in zip(one, many):  # padding to a batch's longest must not leak into shorter rows
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


def test_ner_predictions_give_a_tag_per_character_and_entities(tagger):
    predictions = Predictor.load(tagger[1]).predict(TEXTS[-2:])
    for text, prediction in zip(TEXTS[-2:], predictions):
        assert len(prediction.tags) == len(text) and set(prediction.tags) <= set(MSRA_TAGS)
        assert prediction.entities == entities_from_tags(text, prediction.tags)


def test_char_tags_continue_multi_char_tokens_and_entities_parse_bio():
    encoding = Encoding(tokens=["[CLS]", "北京", "大学", "在", "[SEP]"], input_ids=[1, 5, 6, 7, 2],
                        token_type_ids=[0] * 5,
                        spans=[TokenSpan(-1, 0, 0), TokenSpan(0, 0, 2), TokenSpan(0, 2, 4), TokenSpan(0, 4, 5),
                               TokenSpan(-1, 1, 1)])
    labels = list(MSRA_TAGS)
    tags = char_tags_from_token_tags(labels, encoding, [6, 2, 3, 6, 6], num_chars=6)
    assert tags == ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O"]
    assert entities_from_tags("北京大学在海", tags) == [{"type": "ORG", "start": 0, "end": 4, "text": "北京大学"}]
    assert entities_from_tags("abc", ["I-PER", "B-LOC", "I-PER"]) == [
        {"type": "PER", "start": 0, "end": 1, "text": "a"}, {"type": "LOC", "start": 1, "end": 2, "text": "b"},
        {"type": "PER", "start": 2, "end": 3, "text": "c"}]


def test_read_text_file_pairs_and_errors(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("一句话\n\n问题一\t问题二\n", encoding="utf-8")
    assert read_text_file(path) == ["一句话", "", ("问题一", "问题二")]  # item i is line i + 1
    path.write_bytes("\ufeff行一\r\n行\u2028二\n".encode("utf-8"))  # BOM and CRLF dropped; U+2028 is no line end
    assert read_text_file(path) == ["行一", "行\u2028二"]
    path.write_text("a\nb\tc\td\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"in.txt:2: expected 1 or 2 TAB-separated fields, got 3"):
        read_text_file(path)


def test_onnx_path_never_imports_torch(classifier):
    script = textwrap.dedent(f"""
        import json, sys
        import typer
        from typer.testing import CliRunner
        from ernie_tiny.deploy.predict import Predictor
        from ernie_tiny.commands.predict import predict
        print(Predictor.load({str(classifier[1])!r}).predict(["房间很干净"])[0].label)
        app = typer.Typer(); app.command()(predict); app.command("noop")(lambda: None)
        result = CliRunner().invoke(app, ["predict", "--model", {str(classifier[1])!r}, "--text", "太吵了"])
        assert result.exit_code == 0, result.output
        print(json.loads(result.output.splitlines()[0])["label"])
        print("torch imported:", "torch" in sys.modules)
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0] in ("negative", "positive") and lines[1] in ("negative", "positive")
    assert lines[-1] == "torch imported: False"


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(predict_command)
    app.command("noop")(lambda: None)
    return app


def test_cli_writes_json_lines_for_texts_and_files(classifier, tmp_path):
    inputs = tmp_path / "in.txt"
    inputs.write_text("早餐品种太少\n酒店不错\t服务很好\n", encoding="utf-8")
    result = CliRunner().invoke(cli(), ["predict", "--model", str(classifier[1]), "--text", "房间很干净",
                                        "--file", str(inputs)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["text_a"] for r in rows] == ["房间很干净", "早餐品种太少", "酒店不错"]
    assert rows[2]["text_b"] == "服务很好"
    assert all(sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5) for r in rows)
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli(), ["predict", "--model", str(classifier[1]), "--file", str(inputs),
                                        "--output", str(out)])
    assert result.exit_code == 0 and len(out.read_text(encoding="utf-8").splitlines()) == 2


def test_cli_errors_are_one_line(classifier, tmp_path):
    nothing = CliRunner().invoke(cli(), ["predict", "--model", str(classifier[1])])
    assert nothing.exit_code == 1 and "nothing to predict" in nothing.output
    missing = CliRunner().invoke(cli(), ["predict", "--model", str(tmp_path / "none"), "--text", "好"])
    assert missing.exit_code == 1 and "neither an export folder" in missing.output
    assert "Traceback" not in missing.output
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        cuda = CliRunner().invoke(cli(), ["predict", "--model", str(classifier[1]), "--text", "好", "--device", "cuda"])
        assert cuda.exit_code == 1 and "CUDAExecutionProvider" in cuda.output


def test_softmax_is_stable_for_large_logits():
    assert softmax(np.array([[1000.0, 1000.0]])).tolist() == [[0.5, 0.5]]


# ---- every input line gets one output line; bad input gets one line ----------------------------------------

def run_cli(*args: str):
    return CliRunner().invoke(cli(), ["predict", *args])


def test_every_file_line_gets_one_output_line_that_names_it(classifier, tmp_path):
    inputs = tmp_path / "in.txt"
    inputs.write_text("早餐品种太少\n\n   \n酒店不错\t服务很好\n酒店不错\t \n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run_cli("--model", str(classifier[1]), "--file", str(inputs), "--output", str(out))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    assert [("label" in r, r.get("error")) for r in rows] == [
        (True, None), (False, "empty text: nothing to predict"), (False, "empty text: nothing to predict"),
        (True, None), (False, "empty text_b: nothing to predict")]
    assert "2 of 5 texts predicted" in result.output and "3 empty" in result.output


def test_texts_are_numbered_and_an_empty_text_is_refused(classifier):
    result = run_cli("--model", str(classifier[1]), "--text", "好", "--text", "太吵了")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["index"] for line in result.output.splitlines()] == [1, 2]
    for empty in ("", "   ", "\t"):
        result = run_cli("--model", str(classifier[1]), "--text", "好", "--text", empty)
        assert result.exit_code == 1 and result.output.strip() == \
            "error: --text 2 is empty or whitespace only: nothing to predict", result.output


def test_truncation_is_flagged_per_line_and_counted(classifier, tmp_path):
    inputs = tmp_path / "in.txt"
    inputs.write_text("好\n" + "房间很干净" * 2002 + "\n", encoding="utf-8")  # 10,010 characters
    result = run_cli("--model", str(classifier[1]), "--file", str(inputs), "--max-len", "128")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [r["truncated"] for r in rows] == [False, True]
    assert "1 truncated to 128 tokens" in result.output


def test_a_gbk_file_names_the_file_and_line(classifier, tmp_path):
    inputs = tmp_path / "gbk.txt"
    inputs.write_bytes("好\n".encode("utf-8") + "房间很干净\n".encode("gbk"))
    out = tmp_path / "out.jsonl"
    result = run_cli("--model", str(classifier[1]), "--file", str(inputs), "--output", str(out))
    assert result.exit_code == 1 and not out.exists()
    assert result.output.strip().splitlines() == [
        f"error: {inputs}:2: not valid UTF-8 (byte 0: invalid start byte); convert the file to UTF-8 first"]


LINE_CHARS = st.sampled_from(["a", "好", "\t", "\r", " ", "\u2028", "\x85", "\ufeff", "é", "\x00"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=60),
                         st.lists(st.text(LINE_CHARS, max_size=6), max_size=5).map(lambda ls: "\n".join(ls)),
                         st.text(max_size=30)))
def test_any_file_gives_one_line_per_input_line_or_one_error_line(classifier, tmp_path, content):
    inputs = tmp_path / "random.txt"
    data = content if isinstance(content, bytes) else content.encode("utf-8")
    inputs.write_bytes(data)
    out = tmp_path / "random.jsonl"
    out.unlink(missing_ok=True)
    result = run_cli("--model", str(classifier[1]), "--file", str(inputs), "--output", str(out))
    assert "Traceback" not in result.output
    lines = data.split(b"\n")
    expected = len(lines) - (lines[-1] == b"")
    if result.exit_code == 0:
        rows = out.read_text(encoding="utf-8").splitlines()  # splitlines: U+2028 and the like are escaped
        assert [json.loads(row)["line"] for row in rows] == list(range(1, expected + 1))
    else:
        assert result.exit_code == 1 and not out.exists()
        error = result.output.strip().splitlines()
        assert len(error) == 1 and error[0].startswith(f"error: {inputs}"), result.output
        assert re.match(rf"error: {re.escape(str(inputs))}:\d+: ", error[0]) or expected == 0, error[0]
