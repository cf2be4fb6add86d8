"""The bench's torch rows: a runner per role and precision, each on its own copy of the model, buckets warm."""

from __future__ import annotations

import numpy as np
import torch

from ernie_tiny.bench.torch_variants import cuda_runners, timed_rows, torch_infer
from ernie_tiny.deploy.torch_runner import TorchPrecision
from ernie_tiny.model import ErnieConfig, build_model


def test_timed_rows_are_the_full_and_the_last_batch():
    assert timed_rows(8, 20) == [8, 4]
    assert timed_rows(8, 16) == [8]
    assert timed_rows(32, 5) == [5]


def test_runners_cover_every_precision_on_their_own_model_copy():
    torch.manual_seed(0)
    config = ErnieConfig.from_preset("student-micro", vocab_size=100)
    models = {"teacher": build_model(config, "sequence_classification").eval(),
              "student": build_model(config, "sequence_classification").eval()}
    runners = cuda_runners(models, torch.device("cpu"), max_len=32, cuda_graphs=True, warm_rows=[8, 3],
                           precisions=(TorchPrecision.fp32, TorchPrecision.bf16))
    assert [(role, precision) for role, precision, _ in runners] == [
        ("teacher", TorchPrecision.fp32), ("student", TorchPrecision.fp32),
        ("teacher", TorchPrecision.bf16), ("student", TorchPrecision.bf16)]
    assert all(p.dtype == torch.float32 for model in models.values() for p in model.parameters())  # untouched
    arrays = {"input_ids": np.array([[1, 7, 9, 2, 0], [1, 5, 2, 0, 0]]), "token_type_ids": np.zeros((2, 5), np.int64),
              "attention_mask": np.array([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])}
    expected = torch_infer(models["teacher"], torch.device("cpu"))(arrays)
    for role, precision, runner in runners:
        assert next(runner.model.parameters()).dtype == (torch.float32 if precision is TorchPrecision.fp32
                                                         else torch.bfloat16)
        if role == "teacher":
            tolerance = 1e-5 if precision is TorchPrecision.fp32 else 5e-2
            np.testing.assert_allclose(runner.run(arrays)["logits"], expected, atol=tolerance)
