"""Checkpoint folders: round trip, atomic writes, clear errors on bad folders."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ernie_tiny.checkpoint import CheckpointError, load_pretrained, save_pretrained
from ernie_tiny.io_utils import atomic_dir, atomic_write_json
from ernie_tiny.model import ErnieConfig, HeadKind, build_model


def small_model(head="sequence_classification", num_labels=3):
    return build_model(ErnieConfig.from_preset("student-micro", vocab_size=60), head, num_labels)


def test_round_trip_keeps_weights_config_and_labels(tmp_path):
    model = small_model()
    save_pretrained(model, tmp_path / "ckpt", task="xnli", labels=["contradiction", "entailment", "neutral"],
                    extra={"metrics": {"accuracy": 0.5}})
    loaded = load_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.ernie.config
    assert loaded.meta.head is HeadKind.sequence_classification
    assert loaded.meta.labels == ["contradiction", "entailment", "neutral"]
    assert loaded.meta.task == "xnli" and loaded.meta.extra["metrics"]["accuracy"] == 0.5
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path):
    first = small_model()
    save_pretrained(first, tmp_path / "ckpt", task="xnli", labels=["a", "b", "c"])
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "ckpt") as tmp:
            (tmp / "config.json").write_text("{half")
            raise RuntimeError("killed mid-write")
    loaded = load_pretrained(tmp_path / "ckpt")
    assert torch.equal(loaded.model.classifier.weight, first.classifier.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_folder_without_config_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="config.json: no such file"):
        load_pretrained(tmp_path)


def test_mismatched_weights_name_every_problem(tmp_path):
    save_pretrained(small_model(), tmp_path / "ckpt", task="x", labels=["a", "b", "c"])
    weights = tmp_path / "ckpt" / "model.safetensors"
    state = load_file(str(weights))
    del state["ernie.pooler.weight"]
    state["ernie.bogus"] = torch.zeros(1)
    state["classifier.weight"] = torch.zeros(5, 64)
    save_file(state, str(weights))
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tmp_path / "ckpt")
    message = str(err.value)
    assert "missing 1: ernie.pooler.weight" in message
    assert "unexpected 1: ernie.bogus" in message
    assert "classifier.weight: expected (3, 64), got (5, 64)" in message


def test_corrupt_weights_and_config_are_clear_errors(tmp_path):
    save_pretrained(small_model(), tmp_path / "ckpt", task="x", labels=["a", "b", "c"])
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="unreadable weights"):
        load_pretrained(tmp_path / "ckpt")
    atomic_write_json(tmp_path / "ckpt" / "config.json", {"model": {"hidden_size": 10, "num_heads": 3}})
    with pytest.raises(CheckpointError, match="unreadable checkpoint config"):
        load_pretrained(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: unreadable"):
        load_pretrained(tmp_path / "ckpt")


def test_atomic_write_json_replaces_whole_file(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"b": "中文"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"b": "中文"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "m.json", {})
        save_pretrained(small_model(), tmp_path / "ckpt")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o755
