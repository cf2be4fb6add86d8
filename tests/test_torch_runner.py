"""The torch runner: buckets never change a real token's output, the torch Predictor answers as the ONNX one,
CUDA graph replay equals eager (on a GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ernie_tiny.checkpoint import save_pretrained
from ernie_tiny.tasks import MSRA_TAGS, Example
from ernie_tiny.deploy.export import ExportOptions, export_checkpoint
from ernie_tiny.deploy.predict import Predictor
from ernie_tiny.deploy.torch_runner import (RunnerConfig, TorchPrecision, TorchRunner, bucket_for, length_buckets,
                                            pad_to_bucket)
from ernie_tiny.model import ErnieConfig, build_model
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.tokenization.encoding import pad_to_arrays

TEXTS = ["房间很干净，服务也很周到", "隔音太差了，晚上根本睡不着", "位置方便，离地铁站很近",
         "早餐品种太少", "性价比高，前台态度很好，下次还来", "空调坏了也没人修", "北京大学在海淀区"]
HEAD_OUTPUTS = {"encoder": ("pooled_output", "sequence_output"),
                "sequence_classification": ("logits", "pooled_output", "sequence_output"),
                "token_classification": ("logits", "sequence_output"), "ranking": ("logits", "pooled_output")}


@given(st.integers(1, 600), st.integers(1, 64), st.data())
def test_a_bucket_is_the_smallest_allowed_length_that_holds_the_batch(max_len, step, data):
    buckets = length_buckets(max_len, step)
    assert buckets[-1] == max_len and list(buckets) == sorted(set(buckets))
    assert all(b % step == 0 for b in buckets[:-1])
    size = data.draw(st.integers(1, max_len))
    chosen = bucket_for(size, buckets)
    assert chosen >= size and all(b < size for b in buckets if b < chosen)
    with pytest.raises(ValueError, match="exceeds the largest bucket"):
        bucket_for(max_len + 1, buckets)


def test_pad_to_bucket_keeps_every_real_token_and_masks_the_rest():
    arrays = pad_to_arrays(CharTokenizer.from_texts(TEXTS).encode_batch([(t, None) for t in TEXTS[:3]], max_len=32))
    stacked = pad_to_bucket(arrays, 4, 32, pad_id=0)
    rows, width = arrays["input_ids"].shape
    assert stacked.shape == (3, 4, 32)
    assert np.array_equal(stacked[0, :rows, :width], arrays["input_ids"])
    assert np.array_equal(stacked[2, :rows, :width], arrays["attention_mask"])
    assert stacked[2, rows:].sum() == 0 and stacked[2, :, width:].sum() == 0


def random_batch(vocab_size: int, lengths: list[int]) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(0)
    width = max(lengths)
    arrays = {"input_ids": np.zeros((len(lengths), width), dtype=np.int64),
              "token_type_ids": np.zeros((len(lengths), width), dtype=np.int64),
              "attention_mask": np.zeros((len(lengths), width), dtype=np.int64)}
    for row, length in enumerate(lengths):
        arrays["input_ids"][row, :length] = generator.integers(5, vocab_size, length)
        arrays["token_type_ids"][row, length // 2:length] = 1
        arrays["attention_mask"][row, :length] = 1
    return arrays


@pytest.mark.parametrize("head", list(HEAD_OUTPUTS))
def test_bucket_padding_never_changes_a_real_tokens_output(head):
    torch.manual_seed(0)
    model = build_model(ErnieConfig.from_preset("student-micro", vocab_size=100), head, num_labels=3).eval()
    runner = TorchRunner(model, HEAD_OUTPUTS[head], RunnerConfig(batch_sizes=(1, 2, 4)))
    lengths = [5, 17, 9, 3, 12]  # 5 rows: a bucket of 4 and one of 1; 17 tokens: the 32 bucket
    outputs = runner.run(random_batch(100, lengths))
    for row, length in enumerate(lengths):  # each text alone, unpadded: what it must get
        alone = random_batch(100, lengths)
        single = {name: torch.from_numpy(value[row:row + 1, :length]) for name, value in alone.items()}
        with torch.no_grad():
            expected = runner.forward(single["input_ids"], single["token_type_ids"], single["attention_mask"])
        for name, value in expected.items():
            got = outputs[name][row, :length] if runner.per_token(name) else outputs[name][row]
            assert got.shape == value[0].shape
            np.testing.assert_allclose(got, value[0].numpy(), atol=2e-5, rtol=1e-5)
    assert outputs[HEAD_OUTPUTS[head][-1]].shape[0] == len(lengths)
    assert "eager" in runner.path and "cpu fp32" in runner.path  # no graphs off CUDA


def test_masked_lm_and_unknown_outputs_are_refused():
    config = ErnieConfig.from_preset("student-micro", vocab_size=100)
    with pytest.raises(ValueError, match="masked_lm"):
        TorchRunner(build_model(config, "masked_lm"), ("logits",))
    with pytest.raises(ValueError, match="gives pooled_output, sequence_output"):
        TorchRunner(build_model(config, "encoder"), ("logits",))


def make_checkpoint(folder: Path, head: str, num_labels: int, task: str, labels: list[str]) -> tuple[Path, Path]:
    tokenizer = CharTokenizer.from_texts(TEXTS)
    torch.manual_seed(1)
    model = build_model(ErnieConfig.from_preset("student-micro", vocab_size=tokenizer.vocab_size), head, num_labels)
    checkpoint = save_pretrained(model, folder / f"{head}-ckpt", tokenizer=tokenizer, task=task, labels=labels)
    export = export_checkpoint(checkpoint, folder / f"{head}-onnx", ExportOptions(),
                               [Example(t, None, 0) for t in TEXTS])
    return checkpoint, export.directory


@pytest.mark.parametrize("head,num_labels,task,labels", [
    ("sequence_classification", 2, "chnsenticorp", ["negative", "positive"]),
    ("token_classification", len(MSRA_TAGS), "msra-ner", list(MSRA_TAGS))])
def test_torch_predictor_answers_as_the_onnx_predictor(tmp_path, head, num_labels, task, labels):
    checkpoint, export = make_checkpoint(tmp_path, head, num_labels, task, labels)
    inputs = TEXTS + ["", ("酒店不错", "服务很好")]
    onnx_predictions = Predictor.load(export).predict(inputs, batch_size=3)
    torch_predictor = Predictor.load_torch(checkpoint, precision="fp32")
    assert torch_predictor.backend.startswith("torch cpu fp32")
    torch_predictions = torch_predictor.predict(inputs, batch_size=3)
    for onnx_prediction, torch_prediction in zip(onnx_predictions, torch_predictions, strict=True):
        assert torch_prediction.label == onnx_prediction.label and torch_prediction.tags == onnx_prediction.tags
        assert torch_prediction.entities == onnx_prediction.entities
        assert torch_prediction.error == onnx_prediction.error and torch_prediction.text_b == onnx_prediction.text_b
        if onnx_prediction.probabilities is not None:
            assert torch_prediction.probabilities == pytest.approx(onnx_prediction.probabilities, abs=1e-4)


def test_torch_predictor_gives_embeddings_when_asked(tmp_path):
    checkpoint, _ = make_checkpoint(tmp_path, "ranking", 1, None, [])
    plain = Predictor.load_torch(checkpoint)
    assert plain.config.outputs == ["logits"]
    with_embeddings = Predictor.load_torch(checkpoint, with_embeddings=True)
    prediction = with_embeddings.predict([TEXTS[0]])[0]
    assert len(prediction.embedding) == 64 and prediction.score == pytest.approx(plain.predict([TEXTS[0]])[0].score)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize("precision", [TorchPrecision.fp16, TorchPrecision.bf16])
@pytest.mark.parametrize("head", ["sequence_classification", "token_classification", "encoder"])
def test_cuda_graph_replay_equals_eager(head, precision):
    torch.manual_seed(0)
    model = build_model(ErnieConfig.from_preset("student-small", vocab_size=300), head, num_labels=3)
    graphs = TorchRunner(model, HEAD_OUTPUTS[head], RunnerConfig(device="cuda", precision=precision))
    eager = TorchRunner(model, HEAD_OUTPUTS[head], RunnerConfig(device="cuda", precision=precision,
                                                                 cuda_graphs=False))
    assert "CUDA graphs" in graphs.path and "eager" in eager.path
    for lengths in ([5, 17, 9], [3], [40, 2, 7, 7, 7], [5, 17, 9]):  # the last replays a captured bucket
        batch = random_batch(300, lengths)
        replayed, expected = graphs.run(batch), eager.run(batch)
        for name in expected:
            np.testing.assert_allclose(replayed[name], expected[name], atol=2e-2, rtol=2e-2)
    assert len(graphs.captured) == 3


def test_warm_up_buckets_runs_every_bucket_a_batch_can_reach():
    model = build_model(ErnieConfig.from_preset("student-micro", vocab_size=100), "sequence_classification", 2)
    runner = TorchRunner(model, ("logits",), RunnerConfig(batch_sizes=(1, 2, 4, 8, 16)))
    assert runner.warm_up_buckets(max_rows=5, max_len=40) == 4 * 3  # rows 1, 2, 4, 8 x lengths 16, 32, 48
    assert runner.warm_up_buckets(max_rows=100, max_len=1000) == 5 * len(runner.lengths)
