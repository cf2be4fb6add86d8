"""``ernie-tiny embed``: one .npy row per input line in order, token vectors with lengths, the server's vectors."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ernie_tiny.commands.embed import embed as embed_command
from ernie_tiny.tasks import Example
from ernie_tiny.deploy.embed import (EmbeddingLayer, EmbeddingsUnavailableError, check_embedding_outputs,
                                     embedding_of, read_lines)
from ernie_tiny.deploy.export import ExportOptions, export_checkpoint
from ernie_tiny.deploy.onnx_session import OnnxModelConfig
from ernie_tiny.deploy.predict import Predictor
from ernie_tiny.deploy.serve import ServeConfig, build_app
from test_export import REVIEWS, make_checkpoint

LINES = [text for _, text in REVIEWS] + ["短", "问题一\t问题二"]  # lengths from 1 to 18 characters, and a pair


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    workspace = tmp_path_factory.mktemp("embed")
    checkpoint = make_checkpoint(workspace / "ckpt", head="encoder", num_labels=0)
    return export_checkpoint(checkpoint, workspace / "onnx", ExportOptions(),
                             [Example(text, None, 0) for _, text in REVIEWS]).directory


@pytest.fixture(scope="module")
def predictor(export_dir) -> Predictor:
    return Predictor.load(export_dir, threads=1)


@pytest.fixture()
def text_file(tmp_path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(embed_command)
    app.command("noop")(lambda: None)
    return app


def run_embed(*args: str):
    return CliRunner().invoke(cli(), ["embed", *args])


def one_by_one(predictor: Predictor, layer: EmbeddingLayer) -> list[np.ndarray]:
    """Each line's embedding from a batch of one: what a row must hold whatever batch it ran in."""
    rows = []
    for line in LINES:
        text_a, _, text_b = line.partition("\t")
        encoding = predictor.tokenizer.encode(text_a, text_b or None, max_len=predictor.config.max_len)
        rows.append(embedding_of(predictor.run([encoding]), 0, len(encoding), layer))
    return rows


@pytest.mark.parametrize("layer", ["pooler", "cls", "mean"])
def test_sentence_vectors_are_one_row_per_line_in_order(export_dir, predictor, text_file, tmp_path, layer):
    result = run_embed("--model", str(export_dir), "--file", str(text_file), "--layer", layer,
                       "--out", str(tmp_path / "out"), "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert f"wrote {len(LINES)} rows" in result.output and "embedding" in result.output  # the progress bar's label
    vectors = np.load(tmp_path / "out" / f"{layer}_emb.npy")
    assert vectors.dtype == np.float32 and vectors.shape == (len(LINES), predictor.config.model_config["hidden_size"])
    np.testing.assert_allclose(vectors, np.stack(one_by_one(predictor, EmbeddingLayer(layer))), atol=1e-5)


def test_token_vectors_are_padded_with_their_lengths(export_dir, predictor, text_file, tmp_path):
    result = run_embed("--model", str(export_dir), "--file", str(text_file), "--layer", "tokens",
                       "--out", str(tmp_path / "out"), "--batch-size", "3")
    assert result.exit_code == 0, result.output
    vectors = np.load(tmp_path / "out" / "top_layer_emb.npy")
    lengths = np.load(tmp_path / "out" / "top_layer_lengths.npy")
    expected = one_by_one(predictor, EmbeddingLayer.tokens)
    assert lengths.tolist() == [len(rows) for rows in expected]
    assert vectors.shape[:2] == (len(LINES), max(lengths))
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(vectors[row, :length], expected[row], atol=1e-5)
        assert not vectors[row, length:].any()  # padding rows are zero


def test_embed_vectors_equal_the_server_vectors(export_dir, predictor, text_file, tmp_path):
    texts = read_lines(text_file)
    singles = [t for t in texts if isinstance(t, str)]
    with TestClient(build_app(ServeConfig(model=str(export_dir)), predictor=predictor)) as client:
        for layer in ("pooler", "mean"):
            result = run_embed("--model", str(export_dir), "--file", str(text_file), "--layer", layer,
                               "--out", str(tmp_path / layer))
            assert result.exit_code == 0, result.output
            written = np.load(tmp_path / layer / f"{layer}_emb.npy")
            served = client.post("/v1/embed", json={"texts": singles, "layer": layer}).json()["embeddings"]
            np.testing.assert_allclose(written[:len(singles)], np.array(served), atol=1e-5)
            pair = client.post("/v1/embed", json={"texts": ["问题一"], "text_pairs": ["问题二"], "layer": layer})
            np.testing.assert_allclose(written[-1], pair.json()["embeddings"][0], atol=1e-5)


def test_bad_input_is_one_line(export_dir, tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("一\n二\n\n三\n", encoding="utf-8")
    result = run_embed("--model", str(export_dir), "--file", str(blank), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and f"{blank}:3: blank text" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o" / "pooler_emb.npy").exists()
    result = run_embed("--model", str(tmp_path / "missing"), "--file", str(blank), "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and "error:" in result.output
    lines = tmp_path / "ok.txt"
    lines.write_text("一\n", encoding="utf-8")
    result = run_embed("--model", str(export_dir), "--file", str(lines), "--out", str(tmp_path / "o"),
                       "--max-len", "9999")
    assert result.exit_code == 1 and "max_len 9999 is outside" in result.output


def test_a_classifier_without_embedding_outputs_is_refused():
    config = OnnxModelConfig(head="sequence_classification", labels=["a", "b"], tokenizer_kind="char",
                             outputs=["logits"])
    with pytest.raises(EmbeddingsUnavailableError, match="re-export with `ernie-tiny export --with-embeddings`"):
        check_embedding_outputs(config, EmbeddingLayer.cls)
    check_embedding_outputs(OnnxModelConfig(head="encoder", labels=[], tokenizer_kind="char",
                                            outputs=["pooled_output", "sequence_output"]), EmbeddingLayer.tokens)


def test_embed_command_imports_no_torch(export_dir, text_file, tmp_path):
    out = tmp_path / "no-torch"
    script = textwrap.dedent(f"""
        import sys
        from ernie_tiny.console import main
        sys.argv = ["ernie-tiny", "embed", "--model", {str(export_dir)!r}, "--file", {str(text_file)!r},
                    "--out", {str(out)!r}]
        try:
            main()
        except SystemExit as exit:
            assert not exit.code, exit.code
        print("torch imported:", "torch" in sys.modules)
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines()[-1] == "torch imported: False"
    assert np.load(out / "pooler_emb.npy").shape[0] == len(LINES)


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="no fork here")
@pytest.mark.parametrize("layer", ["mean", "tokens"])
def test_tokenizer_workers_write_the_same_files(export_dir, text_file, tmp_path, layer):
    """`--tokenizer-workers 2` encodes the lines in two forked processes: the same rows, in the same order."""
    text_file.write_text("\n".join(LINES * 40) + "\n", encoding="utf-8")  # several worker batches
    for workers in ("0", "2"):
        result = run_embed("--model", str(export_dir), "--file", str(text_file), "--layer", layer,
                           "--out", str(tmp_path / workers), "--tokenizer-workers", workers)
        assert result.exit_code == 0, result.output
    name = "top_layer_emb.npy" if layer == "tokens" else f"{layer}_emb.npy"
    alone, pooled = np.load(tmp_path / "0" / name), np.load(tmp_path / "2" / name)
    assert alone.shape[0] == len(LINES) * 40 and np.array_equal(alone, pooled)
