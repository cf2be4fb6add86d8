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
    with pytest.raises(CheckpointError, match="config.json: format_version: missing"):
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


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_every_file_of_a_checkpoint_gets_the_umask_mode(tmp_path, umask):
    """model.safetensors too: safetensors' save_file creates it 0600, unlike every other file we write."""
    import os
    import stat

    from ernie_tiny.tokenization.char import CharTokenizer

    previous = os.umask(umask)
    try:
        save_pretrained(small_model(), tmp_path / "ckpt", tokenizer=CharTokenizer.from_texts(["好的酒店"]))
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "ckpt").iterdir()}
    assert "model.safetensors" in modes and "vocab.txt" in modes
    assert modes == {name: 0o666 & ~umask for name in modes}


# ---- strict config.json reading ---------------------------------------------------------------------

def edited_config(tmp_path, edit, head="sequence_classification", num_labels=3, task="x", labels=("a", "b", "c")):
    """A saved checkpoint whose config.json ``edit(payload)`` changed; returns the folder."""
    save_pretrained(small_model(head, num_labels), tmp_path / "ckpt", task=task, labels=list(labels))
    path = tmp_path / "ckpt" / "config.json"
    payload = json.loads(path.read_text(encoding="utf-8"))
    edit(payload)
    path.write_text(json.dumps(payload), encoding="utf-8")
    return tmp_path / "ckpt"


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["model"].pop("num_heads"), "model.num_heads: missing"),
    (lambda c: c["model"].pop("layer_norm_eps"), "model.layer_norm_eps: missing"),
    (lambda c: c["model"].update(num_head=4), "model.num_head: unknown key"),
    (lambda c: c["model"].update(num_heads="4"), "model.num_heads: expected int, got '4'"),
    (lambda c: c["model"].update(use_task_id=1), "model.use_task_id: expected bool, got 1"),
    (lambda c: c["model"].update(num_heads=5), "model: hidden_size 64 is not a multiple of num_heads 5"),
    (lambda c: c["model"].update(hidden_dropout=1.5), r"model: hidden_dropout must be in \[0, 1\)"),
    (lambda c: c["model"].update(pad_token_id=60), "model: pad_token_id 60 is not a token id"),
    (lambda c: c.pop("labels"), "config.json: labels: missing"),
    (lambda c: c.pop("num_labels"), "config.json: num_labels: missing"),
    (lambda c: c.update(labels=["a", "b"]), "labels: 2 labels but num_labels is 3"),
    (lambda c: c.update(labels=[]), "labels: empty, but the sequence_classification head of task 'x' needs"),
    (lambda c: c.update(labels=["a", "a", "b"]), "repeats a label"),
    (lambda c: c.update(head="classifier"), "head: 'classifier' is not one of"),
    (lambda c: c.update(tokenizer_kind="bpe"), "tokenizer_kind: 'bpe' is not one of char, subword"),
    (lambda c: c.update(format_version=2), "format_version: 2 is not one this ernie-tiny reads"),
    (lambda c: c.update(lables=[]), "config.json: lables: unknown key"),
])
def test_config_json_is_read_strictly(tmp_path, edit, message):
    folder = edited_config(tmp_path, edit)
    with pytest.raises(CheckpointError, match=message) as err:
        load_pretrained(folder)
    assert str(err.value).startswith(str(folder / "config.json") + ": ")
    assert "\n" not in str(err.value)


def test_missing_num_heads_no_longer_builds_a_twelve_head_model(tmp_path):
    # the case: deleting num_heads used to load silently with the default of 12 heads
    folder = edited_config(tmp_path, lambda c: c["model"].pop("num_heads"))
    with pytest.raises(CheckpointError, match="num_heads: missing"):
        load_pretrained(folder)


@pytest.mark.parametrize("head, num_labels, task, labels", [
    ("sequence_classification", 3, None, []),  # a converted Paddle/HF classifier: no task, no label names
    ("encoder", 0, None, []),  # a general-distilled student
    ("masked_lm", 0, None, []),
    ("token_classification", 2, "msra-ner", ["O", "B-PER"]),
    ("ranking", 2, "nlpcc-dbqa", ["0", "1"]),
])
def test_every_config_this_toolkit_writes_loads(tmp_path, head, num_labels, task, labels):
    save_pretrained(small_model(head, num_labels), tmp_path / "ckpt", task=task, labels=labels)
    loaded = load_pretrained(tmp_path / "ckpt")
    assert loaded.meta.head.value == head and loaded.meta.labels == labels and loaded.meta.task == task


def test_a_version_1_config_written_before_strict_reading_still_loads(tmp_path):
    # the exact key set and layout save_pretrained has written since the first release of the format
    model = small_model()
    save_pretrained(model, tmp_path / "ckpt", task="xnli", labels=["contradiction", "entailment", "neutral"])
    payload = json.loads((tmp_path / "ckpt" / "config.json").read_text(encoding="utf-8"))
    assert sorted(payload) == sorted(["format_version", "ernie_tiny_version", "model", "head", "num_labels", "task",
                                      "labels", "tokenizer_kind", "extra"])
    assert sorted(payload["model"]) == sorted(
        ["vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "hidden_act", "hidden_dropout",
         "attention_dropout", "max_position_embeddings", "type_vocab_size", "use_task_id", "task_type_vocab_size",
         "layer_norm_eps", "initializer_range", "pad_token_id", "preset"])
    payload["model"]["hidden_dropout"] = 0  # an int where a float is expected: JSON writers may drop the ".0"
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(payload), encoding="utf-8")
    assert load_pretrained(tmp_path / "ckpt").config.hidden_dropout == 0
