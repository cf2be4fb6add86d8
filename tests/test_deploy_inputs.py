"""Bad export folders and inputs for ``predict``, ``embed`` and ``serve``: one line naming the file, never a traceback.

Also: the server answers a text exactly as ``predict`` does in fp32, whatever else shares its batch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ernie_tiny.cli import app
from ernie_tiny.tasks import Example
from ernie_tiny.deploy.export import ExportOptions, export_checkpoint
from ernie_tiny.deploy.onnx_session import Precision
from ernie_tiny.deploy.predict import Predictor
from test_export import REVIEWS, make_checkpoint

TEXTS = [text for _, text in REVIEWS]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deploy-inputs")


@pytest.fixture(scope="module")
def export_dir(workspace) -> Path:
    """A micro classifier exported with its embedding outputs (predict, embed and serve all take it)."""
    return export_checkpoint(make_checkpoint(workspace / "ckpt"), workspace / "onnx",
                             ExportOptions(with_embeddings=True), [Example(t, None, 0) for t in TEXTS]).directory


def broken_copy(export_dir: Path, target: Path, file_name: str, content: bytes | None) -> Path:
    """A copy of the export whose ``file_name`` holds ``content`` (None: its first half)."""
    shutil.copytree(export_dir, target)
    path = target / file_name
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2] if content is None else content)
    return target


def invoke(*argv: str):
    return CliRunner().invoke(app, list(argv))


def command_line(command: str, model: Path, tmp_path: Path) -> list[str]:
    texts = tmp_path / "texts.txt"
    texts.write_text("房间很干净\n太吵了\n", encoding="utf-8")
    return {"predict": ["predict", "--model", str(model), "--text", "房间很干净"],
            "embed": ["embed", "--model", str(model), "--file", str(texts), "--out", str(tmp_path / "emb")],
            "serve": ["serve", "--model", str(model), "--port", "1"]}[command]  # fails before it binds the port


@pytest.mark.parametrize("command", ["predict", "embed", "serve"])
@pytest.mark.parametrize("content", [b"", None, b"not a protobuf at all \x00\xff"], ids=["empty", "truncated", "junk"])
def test_a_broken_model_onnx_is_one_line_naming_it(export_dir, tmp_path, command, content):
    model = broken_copy(export_dir, tmp_path / "broken", "model.onnx", content)
    result = invoke(*command_line(command, model, tmp_path))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines() == [f"error: {model / 'model.onnx'}: not a valid ONNX model (truncated?)"]


@pytest.mark.parametrize("command", ["predict", "embed", "serve"])
@pytest.mark.parametrize("content", [b"", b"{\n", b"[1, 2]", b'{"head": 7, "labels": "x"', b"\xff\xfe"],
                         ids=["empty", "truncated", "a-list", "cut-object", "not-utf8"])
def test_a_broken_onnx_config_names_the_file(export_dir, tmp_path, command, content):
    model = broken_copy(export_dir, tmp_path / "broken", "onnx_config.json", content)
    result = invoke(*command_line(command, model, tmp_path))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {model / 'onnx_config.json'}: "), result.output


@pytest.mark.parametrize("command", ["predict", "embed"])
def test_a_directory_as_the_text_file_says_so(export_dir, tmp_path, command):
    argv = {"predict": ["predict", "--model", str(export_dir), "--file", str(tmp_path)],
            "embed": ["embed", "--model", str(export_dir), "--file", str(tmp_path), "--out", str(tmp_path / "e")]}
    result = invoke(*argv[command])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert "is a directory" in result.output and str(tmp_path) in result.output, result.output


@pytest.mark.parametrize("command", ["predict", "embed"])
@pytest.mark.parametrize("max_len", ["2", "0", "-1"])
def test_max_len_below_3_is_refused_by_predict_as_by_embed(export_dir, tmp_path, command, max_len):
    result = invoke(*command_line(command, export_dir, tmp_path), "--max-len", max_len)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "'--max-len'" in result.output and "greater than or equal to 3" in result.output, result.output


def test_the_library_refuses_max_len_outside_the_model_as_embed_does(export_dir):
    predictor = Predictor.load(export_dir, threads=1)
    positions = predictor.config.max_position_embeddings
    for max_len in (2, positions + 1):
        with pytest.raises(ValueError, match=rf"max_len {max_len} is outside 3\.\.{positions} \(the model's"):
            predictor.predict(["房间很干净"], max_len=max_len)


def batch_of(predictor: Predictor, texts: list[str]) -> list[dict[str, float]]:
    return [p.probabilities for p in predictor.predict(texts, batch_size=len(texts))]


def test_fp32_answers_are_bit_identical_whatever_shares_the_batch(export_dir):
    """The server batches a request's texts with other requests' texts; in fp32 that changes no bit."""
    predictor = Predictor.load(export_dir, threads=1)
    companions = [TEXTS[5] * 4, TEXTS[1], "好", TEXTS[9] + TEXTS[10]]
    for text in TEXTS[:4]:
        alone = batch_of(predictor, [text])[0]
        for others in ([], companions[:1], companions, companions[::-1]):
            assert batch_of(predictor, [*others, text])[len(others)] == alone, (text, others)
            logits_alone = predictor.run(predictor.tokenizer.encode_batch([text], max_len=128))["logits"][0]
            encodings = predictor.tokenizer.encode_batch([*others, text], max_len=128)
            assert np.array_equal(predictor.run(encodings)["logits"][len(others)], logits_alone)


def test_int8_answers_move_with_their_batch_companions(workspace, export_dir):
    """Dynamic quantisation scales activations per batch, so an int8 answer depends on its companions;
    the difference stays small (what the README says about it is measured here)."""
    int8 = export_checkpoint(workspace / "ckpt", workspace / "int8", ExportOptions(precision=Precision.int8),
                             [Example(t, None, 0) for t in TEXTS]).directory
    predictor = Predictor.load(int8, threads=1)
    companions = [TEXTS[5] * 4, TEXTS[1], TEXTS[9] + TEXTS[10]]
    worst = 0.0
    for text in TEXTS:
        alone = batch_of(predictor, [text])[0]
        together = batch_of(predictor, [*companions, text])[len(companions)]
        worst = max(worst, max(abs(alone[label] - together[label]) for label in alone))
    assert worst < 0.01
