"""Shared training infrastructure: schedule, optimizer groups, RNG/state round trips, data order, logs."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from ernie_tiny.training import state as training_state
from ernie_tiny.model import ErnieConfig, build_model
from ernie_tiny.tasks.batches import collate
from ernie_tiny.tasks import Example, encode_examples, get_task
from ernie_tiny.tokenization.char import CharTokenizer
from ernie_tiny.training.data_order import BatchOrder, batch_for_step, batch_indices, batches, bucketed_batch_for_step
from ernie_tiny.training.inference import predict
from ernie_tiny.training.logging import MetricsLog, make_progress, plot_loss_curves, read_metrics
from ernie_tiny.training.precision import Precision
from ernie_tiny.training.schedule import OptimConfig, build_optimizer, get_lr, scaled_lr, set_seed
from ernie_tiny.training.state import (TrainingState, apply_training_state, capture_rng_state, read_training_state, restore_rng_state,
                                       save_training_state)




def load_training_state(path, model, optimizer) -> TrainingState:
    """What the loop does on --resume: read the state, then put it into the model, optimizer and RNGs."""
    state = read_training_state(path)
    apply_training_state(state, model, optimizer, path)
    return state

def test_get_lr_warms_up_then_decays_linearly_to_zero():
    values = [get_lr(step, max_steps=100, base_lr=1.0, warmup_steps=10) for step in (0, 4, 9, 10, 55, 99, 100, 120)]
    assert values == pytest.approx([0.1, 0.5, 1.0, 1.0, 0.5, 1 / 90, 0.0, 0.0])
    assert get_lr(0, max_steps=5, base_lr=2e-3, warmup_steps=0) == pytest.approx(2e-3)


def test_optim_config_validates():
    assert OptimConfig(warmup_ratio=0.1).warmup_steps(50) == 5
    with pytest.raises(ValueError, match="batch_size 6 is not a multiple of grad_accum 4"):
        OptimConfig(batch_size=6, grad_accum=4)
    with pytest.raises(ValueError, match="unknown OptimConfig fields: max_step"):
        OptimConfig.from_dict({"lr": 1e-3, "max_step": 5})
    assert OptimConfig.from_dict({"precision": "bf16"}).precision is Precision.bf16
    with pytest.raises(ValueError, match="lr must be positive"):
        OptimConfig(lr=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        OptimConfig(batch_size=0)
    with pytest.raises(ValueError, match="warmup_ratio"):
        OptimConfig(warmup_ratio=1.0)


def test_no_weight_decay_on_biases_and_layer_norm():
    model = build_model(ErnieConfig.from_preset("teacher-micro", vocab_size=50), "sequence_classification", 2)
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.01)
    decayed, plain = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("bias") or "norm" in names[id(p)] for p in plain["params"])
    assert any(names[id(p)] == "ernie.layers.0.attention_norm.weight" for p in plain["params"])
    assert all(p.ndim == 2 for p in decayed["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_rng_state_round_trip_covers_python_numpy_torch():
    set_seed(3)
    state = capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(2))
    restore_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(2))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


def test_training_state_round_trip_and_atomic_save(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(model, lr=0.1, weight_decay=0.0)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "last.pt"
    save_training_state(path, model, optimizer, step=7, extra={"best": {"step": 5}}, config=OptimConfig(lr=0.1))
    expected_weight = model.weight.detach().clone()
    expected_draw = torch.rand(3)

    fresh = nn.Linear(3, 2)
    fresh_optimizer = build_optimizer(fresh, lr=0.1, weight_decay=0.0)
    state = load_training_state(path, fresh, fresh_optimizer)
    assert state.step == 7 and state.extra == {"best": {"step": 5}} and state.config["lr"] == 0.1
    assert torch.equal(fresh.weight, expected_weight)
    moments = [o.state_dict()["state"][0]["exp_avg"] for o in (optimizer, fresh_optimizer)]
    assert torch.equal(*moments)
    assert torch.equal(torch.rand(3), expected_draw)  # the torch RNG continues where it was saved

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(training_state.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_training_state(path, model, optimizer, step=9)
    monkeypatch.undo()
    assert load_training_state(path, fresh, fresh_optimizer).step == 7  # the old file survived
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind
    with pytest.raises(FileNotFoundError, match="no training state to resume from"):
        load_training_state(tmp_path / "none.pt", fresh, fresh_optimizer)


def test_data_order_is_a_pure_function_of_seed_epoch_and_step():
    first = batch_indices(10, 4, shuffle=True, seed=1, epoch=0)
    assert first == batch_indices(10, 4, shuffle=True, seed=1, epoch=0)
    assert first != batch_indices(10, 4, shuffle=True, seed=1, epoch=1)
    assert [len(b) for b in first] == [4, 4, 2] and sorted(sum(first, [])) == list(range(10))
    assert batch_indices(5, 2, shuffle=False, seed=0, epoch=0) == [[0, 1], [2, 3], [4]]
    items = list("abcdefghij")
    epoch1 = batch_indices(10, 4, shuffle=True, seed=1, epoch=1)
    assert batch_for_step(items, 4, 4, seed=1) == [items[i] for i in epoch1[1]]  # step 4 = epoch 1, batch 1
    assert list(batches(items, 4, shuffle=True, seed=1, epoch=0))[2] == [items[i] for i in first[2]]


def test_ddp_shards_are_disjoint_and_cover_every_item():
    shards = [sum(batch_indices(10, 2, shuffle=True, seed=5, epoch=0, rank=r, world_size=3), []) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # 10 items wrap to 12, like DistributedSampler
    assert set(shards[0]) | set(shards[1]) | set(shards[2]) == set(range(10))
    assert len(set(shards[0]) & set(shards[1])) <= 1
    with pytest.raises(ValueError, match="rank 3 is not in"):
        batch_indices(10, 2, True, 5, 0, rank=3, world_size=3)


def test_metrics_log_csv_resume_and_plot(tmp_path):
    log = MetricsLog(tmp_path)
    for step in (10, 20, 30):
        log.log(step, "train", loss=1.0 / step, lr=0.1)
    log.log(20, "dev", accuracy=0.5)
    log.write_csv()
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0] == "step,split,loss,lr,accuracy" and len(csv_lines) == 5
    resumed = MetricsLog(tmp_path, resume_step=20)  # a crash after step 20: later records are dropped
    assert [(r["step"], r["split"]) for r in read_metrics(resumed.jsonl_path)] == [(10, "train"), (20, "train"),
                                                                                    (20, "dev")]
    png = plot_loss_curves(tmp_path / "metrics.jsonl", tmp_path / "loss_curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["loss"] == pytest.approx(0.1)


def test_progress_has_speed_and_loss_columns():
    progress = make_progress(disable=True)
    with progress:
        task = progress.add_task("train", total=3, speed="", losses="")
        progress.update(task, advance=2, speed="12 ex/s", losses="loss 0.5000")
    assert progress.tasks[0].completed == 2 and progress.tasks[0].fields["losses"] == "loss 0.5000"
    assert len(progress.columns) == 6


def test_predict_unpads_token_outputs_and_restores_train_mode():
    task = get_task("msra-ner")
    tokenizer = CharTokenizer.from_texts(["张三去北京"])
    examples = [Example("张三", None, [0, 1]), Example("张三去北京", None, [0, 1, 6, 4, 5])]
    encoded = encode_examples(examples, tokenizer, max_len=32)
    model = build_model(ErnieConfig.from_preset("teacher-micro", vocab_size=tokenizer.vocab_size),
                        "token_classification", 7)
    model.train()
    outputs = predict(model, encoded.items, lambda items: collate(task, items, tokenizer.pad_id), batch_size=2)
    assert [o.shape for o in outputs] == [(4, 7), (7, 7)] and model.training
    alone = predict(model, encoded.items[:1], lambda items: collate(task, items, tokenizer.pad_id), batch_size=1)
    np.testing.assert_allclose(alone[0], outputs[0], atol=1e-5)  # padding does not change a row's logits


def test_length_buckets_keep_each_epoch_and_pad_less():
    generator = np.random.default_rng(0)
    lengths = [int(n) for n in generator.integers(5, 128, size=203)]
    items = list(range(203))
    steps_per_epoch = -(-203 // 8)
    for world_size, rank in ((1, 0), (2, 1)):
        per_rank = -(-203 // world_size)
        steps_per_epoch = -(-per_rank // 8)
        for epoch in (0, 1):
            plain = [batch_for_step(items, epoch * steps_per_epoch + s, 8, 3, rank, world_size)
                     for s in range(steps_per_epoch)]
            bucketed = [bucketed_batch_for_step(items, lengths, epoch * steps_per_epoch + s, 8, 3, rank, world_size,
                                                window=10) for s in range(steps_per_epoch)]
            assert sorted(i for b in bucketed for i in b) == sorted(i for b in plain for i in b)  # same examples
            assert [len(b) for b in bucketed].count(8) >= len(bucketed) - 1

            def padding(batches):
                return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

            assert padding(bucketed) < 0.5 * padding(plain)
    again = [bucketed_batch_for_step(items, lengths, s, 8, 3, window=10) for s in range(40)]
    assert again == [bucketed_batch_for_step(items, lengths, s, 8, 3, window=10) for s in range(40)]
    assert again[:steps_per_epoch] != again[steps_per_epoch:2 * steps_per_epoch]  # each epoch its own order
    assert BatchOrder.auto.resolve("cuda") is BatchOrder.length_buckets
    assert BatchOrder.auto.resolve("cpu") is BatchOrder.shuffled


def test_the_cuda_default_batch_scales_only_a_default_lr():
    from ernie_tiny.commands.training_options import batch_and_lr

    assert batch_and_lr("cpu", None, None, 3e-4) == (32, 3e-4)  # CPU runs are unchanged
    assert batch_and_lr("cuda", None, None, 3e-4) == (128, pytest.approx(6e-4))  # sqrt(128 / 32) = 2
    assert batch_and_lr("cuda:1", None, 1e-4, 3e-4) == (128, 1e-4)  # an explicit lr is used as written
    assert batch_and_lr("cuda", 64, None, 3e-4) == (64, 3e-4)  # so is the lr of an explicit batch
    assert scaled_lr(1e-3, 512) == pytest.approx(4e-3)
