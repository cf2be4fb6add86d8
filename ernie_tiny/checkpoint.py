"""Checkpoint folders: ``config.json`` + ``model.safetensors`` + tokenizer files.

``config.json`` holds the model config, the head, the task and its label list and
the tokenizer kind, so that a folder is everything ``export``, ``bench`` and
``distill --teacher`` need. Folders are written whole into a temp folder and
renamed into place, so a crash mid-write never leaves a folder that loads as good.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ernie_tiny import __version__
from ernie_tiny.tokenization.encoding import Tokenizer
from ernie_tiny.io_utils import atomic_dir, atomic_write_json, give_ordinary_permissions
from ernie_tiny.model import ErnieConfig, HeadKind, build_model, encoder_of

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, half-written or does not match its config."""


@dataclass
class CheckpointMeta:
    """What ``config.json`` says besides the model config."""

    head: HeadKind = HeadKind.encoder
    task: str | None = None
    labels: list[str] = field(default_factory=list)
    tokenizer_kind: str | None = None  # "char" or "subword"; tokenizer files sit beside the weights
    extra: dict = field(default_factory=dict)  # free-form provenance: source checkpoint, metrics, preset


@dataclass
class LoadedCheckpoint:
    model: nn.Module
    config: ErnieConfig
    meta: CheckpointMeta
    tokenizer: Tokenizer | None


def state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors, contiguous, without the tied MLM decoder (it is the word embedding)."""
    return {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}


def save_pretrained(model: nn.Module, directory: str | os.PathLike, tokenizer: Tokenizer | None = None,
                    task: str | None = None, labels: list[str] | None = None, extra: dict | None = None) -> Path:
    """Write ``model`` (an ErnieModel or a head model) and its tokenizer to ``directory`` atomically."""
    config = encoder_of(model).config
    head = getattr(model, "head_kind", HeadKind.encoder)
    payload = {
        "format_version": FORMAT_VERSION,
        "ernie_tiny_version": __version__,
        "model": config.to_dict(),
        "head": HeadKind(head).value,
        "num_labels": getattr(model, "num_labels", 0),
        "task": task,
        "labels": list(labels or []),
        "tokenizer_kind": getattr(tokenizer, "kind", None),
        "extra": extra or {},
    }
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        save_file(state_dict_for_saving(model), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        give_ordinary_permissions(tmp / WEIGHTS_FILE)  # save_file writes 0600; every other file gets the umask's mode
        if tokenizer is not None:
            tokenizer.save(str(tmp))
        atomic_write_json(tmp / CONFIG_FILE, payload)  # written last: its presence marks a finished folder
    return directory


# Every key save_pretrained writes; a config.json read back must hold exactly these (format version 1).
CONFIG_KEYS = ("format_version", "ernie_tiny_version", "model", "head", "num_labels", "task", "labels",
               "tokenizer_kind", "extra")
TOKENIZER_KINDS = ("char", "subword")
# Heads with one output per label: a checkpoint trained on a task must name them.
LABELLED_HEADS = (HeadKind.sequence_classification, HeadKind.token_classification, HeadKind.ranking)


def read_checkpoint_config(directory: str | os.PathLike) -> tuple[ErnieConfig, CheckpointMeta, int]:
    """Parse ``config.json`` strictly: the model config, the meta, and num_labels.

    A missing or unknown key, a wrong type or an impossible value stops with one line,
    ``.../config.json: model.num_heads: missing``; nothing is filled in with a default.
    """
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (not an ernie-tiny checkpoint folder)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint config: {err}") from err
    try:
        return parse_checkpoint_config(payload)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None


def parse_checkpoint_config(payload: object) -> tuple[ErnieConfig, CheckpointMeta, int]:
    """The checks of :func:`read_checkpoint_config` on the parsed JSON; ``ValueError`` names the key."""
    if not isinstance(payload, dict):
        raise ValueError(f"expected a JSON object, got {type(payload).__name__}")
    for key in CONFIG_KEYS:
        if key not in payload:
            raise ValueError(f"{key}: missing")
    unknown = sorted(set(payload) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key")
    version = payload["format_version"]
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"format_version: {version!r} is not one this ernie-tiny reads (1..{FORMAT_VERSION})")
    config = ErnieConfig.from_dict(payload["model"])
    try:
        head = HeadKind(payload["head"])
    except ValueError:
        raise ValueError(f"head: {payload['head']!r} is not one of {', '.join(h.value for h in HeadKind)}") from None
    num_labels, labels, task = payload["num_labels"], payload["labels"], payload["task"]
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 0:
        raise ValueError(f"num_labels: expected an int >= 0, got {num_labels!r}")
    if head in LABELLED_HEADS and num_labels < 1:
        raise ValueError(f"num_labels: the {head.value} head needs at least 1, got {num_labels}")
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ValueError(f"labels: expected a list of strings, got {labels!r}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels: {labels} repeats a label")
    if labels and len(labels) != num_labels:
        raise ValueError(f"labels: {len(labels)} labels but num_labels is {num_labels}")
    if task is not None and not isinstance(task, str):
        raise ValueError(f"task: expected a string or null, got {task!r}")
    if task is not None and head in LABELLED_HEADS and not labels:
        raise ValueError(f"labels: empty, but the {head.value} head of task {task!r} needs its label names")
    if payload["tokenizer_kind"] not in (*TOKENIZER_KINDS, None):
        raise ValueError(f"tokenizer_kind: {payload['tokenizer_kind']!r} is not one of {', '.join(TOKENIZER_KINDS)} "
                         "or null")
    if not isinstance(payload["extra"], dict):
        raise ValueError(f"extra: expected an object, got {type(payload['extra']).__name__}")
    meta = CheckpointMeta(head=head, task=task, labels=list(labels), tokenizer_kind=payload["tokenizer_kind"],
                          extra=payload["extra"])
    return config, meta, num_labels


def check_state_dict(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` naming every missing, unexpected or mis-shaped tensor."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped = [f"{k}: expected {tuple(expected[k].shape)}, got {tuple(found[k].shape)}"
                 for k in sorted(set(expected) & set(found)) if expected[k].shape != found[k].shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped {len(misshaped)}: {'; '.join(misshaped)}")
    if problems:
        raise CheckpointError(f"{source}: parameters do not match the model: " + " | ".join(problems))


def load_pretrained(directory: str | os.PathLike, load_tokenizer_files: bool = True,
                    map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Load a folder written by :func:`save_pretrained`; every key and shape is checked."""
    directory = Path(directory)
    config, meta, num_labels = read_checkpoint_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: no such file")
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights}: unreadable weights: {err}") from err
    model = build_model(config, meta.head, num_labels=max(num_labels, 1))
    check_state_dict(model.state_dict(), state, str(weights))
    model.load_state_dict(state)
    tokenizer = None
    if load_tokenizer_files and meta.tokenizer_kind is not None:
        from ernie_tiny.tokenization.load import load_tokenizer

        tokenizer = load_tokenizer(directory)
    return LoadedCheckpoint(model=model, config=config, meta=meta, tokenizer=tokenizer)
