"""Load a teacher from any of the three folder layouts: ours, Hugging Face, or Paddle ERNIE 1.0.

    ours:    config.json with "format_version" + model.safetensors  (ernie_tiny.checkpoint)
    hf:      config.json with "model_type"/"architectures" (or an early port's bare BERT sizes)
             + model.safetensors | pytorch_model.bin; an ERNIE-tiny port reads the release's
             subword files when they sit beside it
    paddle:  ernie_config.json + params/ (one LoDTensor file per parameter)
    release: the official ERNIE-tiny: paddle + [subword/]spm_cased_simp_sampled.model + dict.wordseg.pickle

Usage::

    loaded = load_checkpoint("ernie-1.0/")   # LoadedCheckpoint(model, config, meta, tokenizer)
    detect_format("ernie-1.0/")           # CheckpointFormat.paddle
"""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path

from torch import nn

from ernie_tiny.checkpoint import CheckpointError, LoadedCheckpoint, load_pretrained
from ernie_tiny.convert.ernie_tiny_release import (is_release_folder, load_ernie_tiny_release,
                                                  refuse_subword_vocab_as_char)
from ernie_tiny.convert.hf import is_legacy_port_config, load_hf_checkpoint
from ernie_tiny.convert.paddle import CONFIG_FILE as PADDLE_CONFIG_FILE
from ernie_tiny.convert.paddle import load_paddle_checkpoint


class CheckpointFormat(str, Enum):
    ours = "ernie-tiny"
    hf = "hf"
    paddle = "paddle"
    ernie_tiny_release = "ernie-tiny-release"


def detect_format(path: str | os.PathLike) -> CheckpointFormat:
    """Which layout the folder at ``path`` holds; :class:`CheckpointError` when none."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such folder")
    if is_release_folder(path):
        return CheckpointFormat.ernie_tiny_release
    if (path / PADDLE_CONFIG_FILE).is_file():
        return CheckpointFormat.paddle
    config_path = path / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{config_path}: not JSON: {err}") from err
        if isinstance(config, dict) and "format_version" in config:
            return CheckpointFormat.ours
        if isinstance(config, dict) and ("model_type" in config or "architectures" in config
                                         or is_legacy_port_config(config)):
            return CheckpointFormat.hf
        raise CheckpointError(f"{config_path}: neither an ernie-tiny config (format_version) nor a "
                              "Hugging Face one (model_type/architectures)")
    raise CheckpointError(f"{path}: not a checkpoint folder: expected config.json (ernie-tiny or Hugging Face) "
                          f"or {PADDLE_CONFIG_FILE} + params/ (Paddle ERNIE)")


def load_checkpoint(path: str | os.PathLike, load_tokenizer_files: bool = True) -> LoadedCheckpoint:
    """Our model + its tokenizer from a folder in any supported layout (see :func:`detect_format`).

    Teachers (``distill --teacher``, ``teacher convert``) and students (``--student-init``) load
    through here: the official ERNIE-tiny release comes with its subword tokenizer.
    """
    found_format = detect_format(path)
    if found_format is CheckpointFormat.ours:
        return load_pretrained(path, load_tokenizer_files=load_tokenizer_files)
    if found_format is CheckpointFormat.hf:
        return load_hf_checkpoint(path, load_tokenizer_files=load_tokenizer_files)
    if found_format is CheckpointFormat.ernie_tiny_release:
        return load_ernie_tiny_release(path, load_tokenizer_files=load_tokenizer_files)
    if load_tokenizer_files:
        refuse_subword_vocab_as_char(Path(path))  # a release folder that lost its subword/ files
    return load_paddle_checkpoint(path, load_tokenizer_files=load_tokenizer_files)


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (the MLM decoder shares the word embedding, so it is not counted twice)."""
    return sum(p.numel() for p in model.parameters())
