"""The one training loop on a toy model: accumulation, precision, the NaN guard, resume, logs, best record."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn

from ernie_tiny.training.data_order import batch_for_step
from ernie_tiny.training.distributed import DistributedContext
from ernie_tiny.training.logging import MetricsLog, read_metrics
from ernie_tiny.training.loop import (LAST_STATE, BestRecord, RunContext, StepLoss, TrainSpec, changed_fields,
                                      split_micro_batches, train)
from ernie_tiny.training.precision import Amp
from ernie_tiny.training.schedule import OptimConfig
from ernie_tiny.training.state import TrainingDivergedError, read_training_state

CPU = DistributedContext(0, 1, 0, torch.device("cpu"))


class Toy(nn.Module):
    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(torch.tanh(self.hidden(x)))).squeeze(-1)


def examples(n: int = 40) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, 4, generator=generator)
    return [(row, row.sum()) for row in inputs]


def toy_spec(model: nn.Module, items: list, optim: OptimConfig, steps: int, **fields) -> TrainSpec:
    def loss_fn(module: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> StepLoss:
        inputs, targets = batch
        error = module(inputs) - targets
        mse = (error ** 2).mean()
        return StepLoss(mse + 0.1 * error.abs().mean(), {"mse": mse.detach()})

    return TrainSpec(name="toy", model=model, steps=steps,
                     items_for_step=lambda step: batch_for_step(items, step, optim.batch_size, optim.seed),
                     collate=lambda rows: (torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])),
                     loss_fn=loss_fn, term_names=["mse"], **fields)


def run_context(out: Path, config: object = None, after_step=None, resume_step: int | None = None) -> RunContext:
    return RunContext(CPU, out, config or {}, Console(file=io.StringIO()), MetricsLog(out, resume_step=resume_step),
                      after_step=after_step)


def trained_weights(tmp_path: Path, name: str, optim: OptimConfig, steps: int = 6, dropout: float = 0.0):
    torch.manual_seed(1)
    model = Toy(dropout)
    train(toy_spec(model, examples(), optim, steps), optim, run_context(tmp_path / name))
    return model.state_dict()


def test_micro_batches_cover_the_batch_in_order():
    assert split_micro_batches(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert split_micro_batches(list(range(4)), 4) == [[0], [1], [2], [3]]


def test_gradient_accumulation_gives_the_same_weights(tmp_path):
    whole = trained_weights(tmp_path, "whole", OptimConfig(lr=1e-2, batch_size=8))
    accumulated = trained_weights(tmp_path, "accum", OptimConfig(lr=1e-2, batch_size=8, grad_accum=4))
    for name in whole:
        assert torch.allclose(whole[name], accumulated[name], atol=1e-6), name
    # and the test can tell: another batch size does not match
    other = trained_weights(tmp_path, "other", OptimConfig(lr=1e-2, batch_size=4))
    assert not torch.allclose(whole["out.weight"], other["out.weight"], atol=1e-6)


def test_bf16_autocast_runs_on_cpu_and_keeps_fp32_weights(tmp_path):
    weights = trained_weights(tmp_path, "bf16", OptimConfig(lr=1e-2, batch_size=8, precision="bf16"))
    fp32 = trained_weights(tmp_path, "fp32", OptimConfig(lr=1e-2, batch_size=8))
    assert all(w.dtype == torch.float32 for w in weights.values())
    assert not torch.equal(weights["out.weight"], fp32["out.weight"])  # bf16 matmuls really ran
    assert torch.allclose(weights["out.weight"], fp32["out.weight"], atol=0.05)


def test_precision_is_resolved_per_device():
    cpu = torch.device("cpu")
    assert Amp.resolve("auto", cpu).name == "fp32" and Amp.resolve("bf16", cpu).name == "bf16"
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Amp.resolve("fp16", cpu)
    with pytest.raises(ValueError):
        Amp.resolve("fp8", cpu)


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    model = Toy()
    with torch.no_grad():
        model.out.weight.fill_(float("nan"))
    optim = OptimConfig(lr=1e-3, batch_size=8)
    with pytest.raises(TrainingDivergedError, match=r"toy step 1: loss nan, gradient norm nan at lr 1\.00e-03"):
        train(toy_spec(model, examples(), optim, 3), optim, run_context(tmp_path))
    assert not (tmp_path / LAST_STATE).exists()  # nothing saved from a diverged step


def test_resume_continues_bit_for_bit(tmp_path):
    optim = OptimConfig(lr=1e-2, batch_size=8, save_every=2, log_every=1)
    straight = trained_weights(tmp_path, "straight", optim, steps=7, dropout=0.3)

    class Crash(Exception):
        pass

    def crash(step: int) -> None:
        if step == 5:
            raise Crash  # last.pt holds step 4

    torch.manual_seed(1)
    out = tmp_path / "crashed"
    with pytest.raises(Crash):
        train(toy_spec(Toy(0.3), examples(), optim, 7), optim, run_context(out, after_step=crash))
    saved = read_training_state(out / LAST_STATE)
    assert saved.step == 4
    resumed = Toy(0.3)
    train(toy_spec(resumed, examples(), optim, 7), optim, run_context(out, resume_step=saved.step), saved)
    for name, value in straight.items():
        assert torch.equal(value, resumed.state_dict()[name]), name  # dropout masks and AdamW moments included
    losses = [[r["loss"] for r in read_metrics(d / "metrics.jsonl") if r["split"] == "train"]
              for d in (tmp_path / "straight", out)]
    assert losses[0] == losses[1] and len(losses[0]) == 7


def test_logs_every_term_and_keeps_the_best_dev_step(tmp_path):
    optim = OptimConfig(lr=1e-2, batch_size=8, eval_every=2, log_every=2)
    scores = iter([0.5, 0.7, 0.7])  # dev metric at steps 2, 4, 6: the tie at 6 keeps step 4
    saved_steps = []
    spec = toy_spec(Toy(), examples(), optim, 6, evaluate=lambda model: {"score": next(scores)},
                    main_metric="score", save_best=lambda model, step, dev: saved_steps.append(step))
    state = train(spec, optim, run_context(tmp_path))
    assert state.best == BestRecord(0.7, 4, {"score": 0.7}) and saved_steps == [2, 4]
    train_lines = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in train_lines] == [2, 4, 6]
    assert all({"loss", "loss_mse", "lr", "grad_norm", "examples_per_s"} <= set(r) for r in train_lines)
    assert all(r["loss_mse"] < r["loss"] for r in train_lines)  # the term, unweighted, below the total


def test_changed_fields_compares_nested_blocks():
    saved = {"task": "lcqmc", "optim": {"lr": 1e-3, "log_every": 10}}
    assert changed_fields(saved, {"task": "lcqmc", "optim": {"lr": 2e-3, "log_every": 5}},
                          frozenset({"optim.log_every"})) == ["optim.lr"]
    assert changed_fields(saved, saved, frozenset()) == []


def test_data_workers_build_the_same_batches_as_the_inline_path(tmp_path):
    optim = OptimConfig(lr=1e-2, batch_size=8, log_every=1)
    inline = trained_weights(tmp_path, "inline", optim, dropout=0.3)
    torch.manual_seed(1)
    model = Toy(0.3)
    spec = toy_spec(model, examples(), optim, 6)
    spec.data_workers = 2
    train(spec, optim, run_context(tmp_path / "workers"))
    for name, value in inline.items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_before_step_sees_every_step_once_and_a_resumed_run_continues_from_its_step(tmp_path):
    optim = OptimConfig(lr=1e-2, batch_size=8, save_every=2, grad_accum=2)
    seen: list[int] = []

    class Crash(Exception):
        pass

    def crash(step: int) -> None:
        if step == 3:
            raise Crash  # last.pt holds step 2

    out = tmp_path / "run"
    with pytest.raises(Crash):
        train(toy_spec(Toy(), examples(), optim, 5, before_step=seen.append), optim, run_context(out, after_step=crash))
    assert seen == [0, 1, 2]  # once per step, not per micro-batch
    saved = read_training_state(out / LAST_STATE)
    resumed: list[int] = []
    train(toy_spec(Toy(), examples(), optim, 5, before_step=resumed.append), optim,
          run_context(out, resume_step=saved.step), saved)
    assert resumed == [2, 3, 4]
