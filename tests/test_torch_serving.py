"""predict, embed and serve with --backend torch on a checkpoint folder: the ONNX path's answers, the same API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ernie_tiny.commands.embed import embed as embed_command
from ernie_tiny.commands.predict import predict as predict_command
from ernie_tiny.commands.serve import serve as serve_command
from ernie_tiny.tasks import Example
from ernie_tiny.deploy.export import ExportOptions, export_checkpoint
from ernie_tiny.deploy.predict import Predictor
from ernie_tiny.deploy.serve import ServeConfig, build_app
from test_export import REVIEWS, make_checkpoint

TEXTS = [text for _, text in REVIEWS]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A micro sentiment classifier, an encoder, and their ONNX exports (with embeddings)."""
    workspace = tmp_path_factory.mktemp("torch-serving")
    classifier = make_checkpoint(workspace / "classifier")
    encoder = make_checkpoint(workspace / "encoder", head="encoder", num_labels=0)
    examples = [Example(text, None, 0) for text in TEXTS]
    return {"classifier": classifier, "encoder": encoder,
            "classifier_onnx": export_checkpoint(classifier, workspace / "classifier-onnx", ExportOptions(),
                                                 examples).directory,
            "encoder_onnx": export_checkpoint(encoder, workspace / "encoder-onnx", ExportOptions(),
                                              examples).directory}


def invoke(command, *args: str):
    app = typer.Typer()
    app.command()(command)
    app.command("noop")(lambda: None)
    return CliRunner().invoke(app, [command.__name__, *args])


def test_predict_cli_on_torch_gives_the_onnx_answers(folders):
    texts = ["--text", TEXTS[0], "--text", TEXTS[1], "--text", f"{TEXTS[2]}\t{TEXTS[3]}"]
    onnx = invoke(predict_command, "--model", str(folders["classifier_onnx"]), "--device", "cpu", *texts)
    torch_run = invoke(predict_command, "--model", str(folders["classifier"]), "--backend", "torch", "--device", "cpu",
                       *texts)
    assert onnx.exit_code == 0 and torch_run.exit_code == 0, torch_run.output
    for onnx_line, torch_line in zip(onnx.stdout.splitlines(), torch_run.stdout.splitlines(), strict=True):
        onnx_record, torch_record = json.loads(onnx_line), json.loads(torch_line)
        assert torch_record["label"] == onnx_record["label"] and torch_record["index"] == onnx_record["index"]
        assert torch_record["probabilities"] == pytest.approx(onnx_record["probabilities"], abs=1e-4)


def test_backend_option_errors_are_one_line(folders):
    wrong = invoke(predict_command, "--model", str(folders["classifier_onnx"]), "--precision", "fp16", "--text", "x")
    assert wrong.exit_code == 1 and "--precision applies to --backend torch" in wrong.output
    assert len(wrong.output.strip().splitlines()) == 1
    not_a_checkpoint = invoke(predict_command, "--model", str(folders["classifier_onnx"]), "--backend", "torch",
                              "--device", "cpu", "--text", "x")
    assert not_a_checkpoint.exit_code == 1 and "Traceback" not in not_a_checkpoint.output
    assert len(not_a_checkpoint.output.strip().splitlines()) == 1
    if not torch.cuda.is_available():
        no_gpu = invoke(serve_command, "--model", str(folders["classifier"]), "--backend", "torch", "--device", "cuda")
        assert no_gpu.exit_code == 1 and "sees no CUDA GPU" in no_gpu.output


def test_embed_cli_on_torch_writes_the_onnx_vectors(folders, tmp_path):
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(TEXTS[:5]) + "\n", encoding="utf-8")
    for name, extra in (("onnx", ()), ("torch", ("--backend", "torch"))):
        model = folders["encoder_onnx" if name == "onnx" else "encoder"]
        result = invoke(embed_command, "--model", str(model), "--file", str(lines), "--out", str(tmp_path / name),
                        "--layer", "mean", "--device", "cpu", "--batch-size", "2", *extra)
        assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "torch" / "mean_emb.npy"), np.load(tmp_path / "onnx" / "mean_emb.npy"),
                               atol=1e-4)


def test_serve_on_torch_answers_as_in_process_and_says_which_path_runs(folders):
    config = ServeConfig(model=str(folders["classifier"]), backend="torch", max_batch=8, max_batch_tokens=64,
                         call_cost_tokens=1e4)
    in_process = Predictor.load_torch(folders["classifier"])
    with TestClient(build_app(config)) as client:
        answer = client.post("/v1/predict", json={"texts": TEXTS[:3]})
        description = client.get("/v1/model").json()
        bad = client.post("/v1/predict", json={"texts": []})
        metrics = client.get("/metrics").text
    assert answer.status_code == 200
    expected = [p.to_dict() for p in in_process.predict(TEXTS[:3])]
    for got, want in zip(answer.json()["predictions"], expected, strict=True):
        assert got["label"] == want["label"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
    assert description["backend"].startswith("torch cpu fp32, eager") and description["max_batch_tokens"] == 64
    assert description["precision"] == "fp32" and description["head"] == "sequence_classification"
    assert bad.status_code == 422 and "error" in bad.json()
    assert "ernie_tiny_batch_size_count" in metrics
