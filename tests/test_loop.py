"""The one training loop on a toy model: accumulation, precision, the NaN guard, resume, logs, best record."""

from __future__ import annotations

import dataclasses
import io
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn

from ernie_tiny.training.data_order import batch_for_step
from ernie_tiny.training.feed import StepBatches, map_tensors
from ernie_tiny.training.distributed import DistributedContext
from ernie_tiny.training.logging import MetricsLog, read_metrics
from ernie_tiny.training.loop import (LAST_STATE, BestRecord, RunContext, StepLoss, TrainSpec, changed_fields,
                                      split_micro_batches, train)
from ernie_tiny.training.precision import Amp
from ernie_tiny.training.schedule import OptimConfig, build_optimizer
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
        train(toy_spec(Toy(), examples(), optim, 5, before_step=lambda step, steps: seen.append(step)), optim,
              run_context(out, after_step=crash))
    assert seen == [0, 1, 2]  # once per step, not per micro-batch
    saved = read_training_state(out / LAST_STATE)
    resumed: list[int] = []
    train(toy_spec(Toy(), examples(), optim, 5, before_step=lambda step, steps: resumed.append(step)), optim,
          run_context(out, resume_step=saved.step), saved)
    assert resumed == [2, 3, 4]


def test_a_divergence_found_at_the_next_check_names_its_first_bad_step_and_saves_nothing(tmp_path):
    model = Toy()
    optim = OptimConfig(lr=1e-3, batch_size=8, log_every=4, save_every=4)

    def poison(step: int, steps: int) -> None:
        if step == 1:  # the second step's forward sees NaN weights; the guard reads the device at step 4
            with torch.no_grad():
                model.out.weight.fill_(float("nan"))

    with pytest.raises(TrainingDivergedError, match=r"toy step 2: loss nan, gradient norm nan at lr 8\.33e-04"):
        train(toy_spec(model, examples(), optim, 6, before_step=poison), optim, run_context(tmp_path))
    assert not (tmp_path / LAST_STATE).exists()
    assert not [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]


def test_steps_between_log_lines_never_read_a_tensor_on_the_host(tmp_path, monkeypatch):
    """A GPU step must not wait for the previous one: no float()/bool()/item() of a tensor in our code."""
    reads: list[str] = []
    for method in ("__bool__", "__float__", "__int__", "item", "tolist"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _method=method):
            caller = sys._getframe(1).f_code.co_filename
            if "ernie_tiny" in caller:
                reads.append(f"{_method} in {caller}")
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, method, counted)
    per_step: list[int] = []
    optim = OptimConfig(lr=1e-2, batch_size=8, log_every=5, save_every=5)
    train(toy_spec(Toy(), examples(), optim, 5), optim,
          run_context(tmp_path, after_step=lambda step: per_step.append(len(reads))))
    assert per_step[:4] == [0, 0, 0, 0], reads  # steps 1-4: nothing; step 5 logs, checks and saves
    assert per_step[4] > 0


class FakeClock:
    """One second per training step: the run's time budget becomes a known step count."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self, step: int) -> None:
        self.now += 1.0


def test_a_time_budget_fixes_the_step_count_once_and_a_resumed_run_keeps_it(tmp_path):
    optim = OptimConfig(lr=1e-2, batch_size=8, save_every=5, log_every=5, max_minutes=0.5)  # 30 fake seconds

    def run(out: Path, resume=None, crash_at: int | None = None) -> tuple[nn.Module, object]:
        torch.manual_seed(1)
        model, clock = Toy(0.3), FakeClock()

        def after(step: int) -> None:
            clock.tick(step)
            if step == crash_at:
                raise RuntimeError("crash")

        context = run_context(out, resume_step=resume.step if resume else None)
        context.after_step, context.clock = after, clock
        spec = toy_spec(model, examples(), optim, 1000, before_step=lambda step, steps: totals.append(steps))
        return model, train(spec, optim, context, resume)

    totals: list[int] = []
    straight, state = run(tmp_path / "straight")
    assert 20 < state.planned_steps < 40 and state.step == state.planned_steps  # not the 1000 max steps
    assert totals == [1000] * 20 + [state.planned_steps] * (state.planned_steps - 20)  # what schedules see
    lrs = [r["lr"] for r in read_metrics(tmp_path / "straight" / "metrics.jsonl") if r["split"] == "train"]
    assert lrs[-1] < 0.1 * optim.lr  # the schedule decayed over the planned steps, not over 1000
    with pytest.raises(RuntimeError, match="crash"):
        run(tmp_path / "crashed", crash_at=27)  # last.pt holds step 25, after the plan
    saved = read_training_state(tmp_path / "crashed" / LAST_STATE)
    assert saved.step == 25 and saved.extra["loop"]["planned_steps"] == state.planned_steps
    resumed, resumed_state = run(tmp_path / "crashed", resume=saved)
    assert resumed_state.step == state.planned_steps
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_map_tensors_reaches_every_tensor_of_a_frozen_batch_and_keeps_the_rest():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        ids: torch.Tensor
        mask: torch.Tensor | None

    @dataclasses.dataclass(frozen=True)
    class Outer:
        inner: Inner
        labels: torch.Tensor
        indices: tuple[int, ...]

    batch = Outer(Inner(torch.ones(2, 3), None), torch.zeros(2), (4, 5))
    doubled = map_tensors(batch, lambda t: t + 1)
    assert torch.equal(doubled.inner.ids, torch.full((2, 3), 2.0)) and doubled.inner.mask is None
    assert torch.equal(doubled.labels, torch.ones(2)) and doubled.indices == (4, 5)
    assert torch.equal(batch.inner.ids, torch.ones(2, 3))  # the original is untouched


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory, fused AdamW: CUDA only")
def test_cuda_steps_use_fused_adamw_and_pinned_batches(tmp_path):
    step = StepBatches(lambda s: examples(8), lambda rows: torch.stack([r[0] for r in rows]), 1, 1)[0]
    assert all(batch.is_pinned() for _, batch in step.pin_memory().micro_batches)
    model = Toy().cuda()
    assert build_optimizer(model, 1e-3, 0.01, fused=True).defaults["fused"]


def test_compile_trains_the_same_weights_under_their_plain_names(tmp_path, monkeypatch):
    compiled: list[nn.Module] = []
    original = torch.compile

    def eager_compile(module, **options):  # dynamo traces the forward; the eager backend skips the C++ build
        compiled.append(module)
        return original(module, backend="eager", **options)

    monkeypatch.setattr(torch, "compile", eager_compile)
    optim = OptimConfig(lr=1e-2, batch_size=8, compile=True)
    weights = trained_weights(tmp_path, "compiled", optim)
    eager = trained_weights(tmp_path, "eager", OptimConfig(lr=1e-2, batch_size=8))
    assert len(compiled) == 1 and weights.keys() == eager.keys()
    saved = read_training_state(tmp_path / "compiled" / LAST_STATE)
    assert saved.model.keys() == eager.keys()  # no "_orig_mod." prefix in last.pt
    for name in eager:
        assert torch.allclose(weights[name], eager[name], atol=1e-6), name
