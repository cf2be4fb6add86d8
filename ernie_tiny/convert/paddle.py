"""Load a PaddlePaddle ERNIE 1.0 release folder without Paddle: LoDTensor files parsed with numpy.

A release folder holds ``ernie_config.json``, ``vocab.txt`` and ``params/`` with one
file per parameter, named by the parameter (``word_embedding``,
``encoder_layer_0_multi_head_att_query_fc.w_0``, ...). Each file is what Paddle's
``SerializeToStream`` writes for a LoDTensor (little-endian)::

    uint32 version (0) | uint64 lod_level | lod_level x (uint64 nbytes, nbytes of size_t offsets)
    uint32 tensor version (0) | int32 desc_size | TensorDesc protobuf (desc_size bytes) | raw data

with ``message TensorDesc { required Type data_type = 1; repeated int64 dims = 2; }``
(paddle/fluid/framework/framework.proto), decoded here by hand.

Usage::

    loaded = load_paddle_checkpoint("ERNIE_1.0_max-len-512/")
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ernie_tiny.checkpoint import CheckpointError, CheckpointMeta, LoadedCheckpoint, check_state_dict
from ernie_tiny.model import ACTIVATIONS, ErnieConfig, HeadKind, build_model
from ernie_tiny.tokenization.char import load_model_vocab

PARAMS_DIR = "params"
CONFIG_FILE = "ernie_config.json"
# VarType.Type values of framework.proto that a parameter can have.
PADDLE_DTYPES = {0: np.bool_, 1: np.int16, 2: np.int32, 3: np.int64, 4: np.float16, 5: np.float32,
                 6: np.float64, 20: np.uint8, 21: np.int8}
BF16 = 22  # no numpy dtype: read as uint16 and widened to float32 by hand
# Files in params/ that are training state, not model parameters (Adam moments, counters).
OPTIMIZER_STATE_MARKERS = ("_moment1_", "_moment2_", "_beta1_pow_acc_", "_beta2_pow_acc_", "@LR_DECAY_COUNTER@",
                           "learning_rate_")
DROPPED_PARAMS = {  # parameters we read and leave out, each with the reason
    "next_sent_fc.w_0": "next-sentence-prediction head: ernie-tiny has no NSP task",
    "next_sent_fc.b_0": "next-sentence-prediction head: ernie-tiny has no NSP task",
}


class LoDTensorError(CheckpointError):
    """A params/ file that is not a well-formed LoDTensor."""


def read_varint(data: bytes, at: int, source: str) -> tuple[int, int]:
    """Protobuf base-128 varint at ``data[at:]``: (value, next position)."""
    value, shift = 0, 0
    while True:
        if at >= len(data):
            raise LoDTensorError(f"{source}: truncated varint in the tensor description")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def parse_tensor_desc(desc: bytes, source: str) -> tuple[int, list[int]]:
    """(data_type, dims) from a serialised TensorDesc; dims may be packed or one field each."""
    data_type, dims, at = None, [], 0
    while at < len(desc):
        tag, at = read_varint(desc, at, source)
        field, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, at = read_varint(desc, at, source)
            if field == 1:
                data_type = value
            elif field == 2:
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)  # int64: two's complement
        elif wire_type == 2:  # length-delimited: packed dims
            length, at = read_varint(desc, at, source)
            end = at + length
            while field == 2 and at < end:
                value, at = read_varint(desc, at, source)
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)
            at = end
        else:
            raise LoDTensorError(f"{source}: unexpected protobuf wire type {wire_type} in the tensor description")
    if data_type is None:
        raise LoDTensorError(f"{source}: tensor description has no data_type")
    return data_type, dims


def read_lod_tensor(path: str | os.PathLike) -> np.ndarray:
    """The array in one Paddle LoDTensor file (LoD offsets, unused by parameters, are skipped)."""
    path = Path(path)
    data = path.read_bytes()
    at = 0

    def take(n: int, what: str) -> bytes:
        nonlocal at
        if at + n > len(data):
            raise LoDTensorError(f"{path}: truncated: {what} needs {n} bytes at offset {at}, "
                                 f"the file has {len(data) - at} left")
        chunk = data[at:at + n]
        at += n
        return chunk

    (version,) = struct.unpack("<I", take(4, "the LoDTensor version"))
    if version != 0:
        raise LoDTensorError(f"{path}: LoDTensor version {version}, expected 0 (not a Paddle parameter file?)")
    (lod_level,) = struct.unpack("<Q", take(8, "the LoD level"))
    for level in range(lod_level):
        (nbytes,) = struct.unpack("<Q", take(8, f"LoD level {level} size"))
        take(nbytes, f"LoD level {level}")
    (tensor_version,) = struct.unpack("<I", take(4, "the tensor version"))
    if tensor_version != 0:
        raise LoDTensorError(f"{path}: tensor version {tensor_version}, expected 0")
    (desc_size,) = struct.unpack("<i", take(4, "the description size"))
    if desc_size < 0:
        raise LoDTensorError(f"{path}: negative description size {desc_size}")
    data_type, dims = parse_tensor_desc(take(desc_size, "the tensor description"), str(path))
    if any(d < 0 for d in dims):
        raise LoDTensorError(f"{path}: unknown dimension in shape {dims}")
    count = int(np.prod(dims, dtype=np.int64))
    if data_type == BF16:
        raw = np.frombuffer(take(2 * count, f"{count} bf16 values of shape {dims}"), dtype="<u2")
        return (raw.astype(np.uint32) << 16).view(np.float32).reshape(dims)  # bf16 is the top half of fp32
    if data_type not in PADDLE_DTYPES:
        raise LoDTensorError(f"{path}: unsupported data type {data_type}")
    dtype = np.dtype(PADDLE_DTYPES[data_type]).newbyteorder("<")
    values = np.frombuffer(take(count * dtype.itemsize, f"{count} {dtype.name} values of shape {dims}"), dtype=dtype)
    if at != len(data):
        raise LoDTensorError(f"{path}: {len(data) - at} bytes after the tensor data")
    return values.reshape(dims).astype(dtype.newbyteorder("="))


def read_ernie_config(path: Path) -> ErnieConfig:
    """Our :class:`ErnieConfig` from ERNIE's ``ernie_config.json`` (preset ``paddle:ernie``)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable config: {err}") from err
    if raw.get("hidden_act", "relu") not in ACTIVATIONS:
        raise CheckpointError(f"{path}: hidden_act {raw['hidden_act']!r} is not one of {sorted(ACTIVATIONS)}")
    try:
        hidden = int(raw["hidden_size"])
        return ErnieConfig(
            vocab_size=int(raw["vocab_size"]),
            hidden_size=hidden,
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw.get("intermediate_size", 4 * hidden)),  # ERNIE 1.0 hard-codes 4x hidden
            hidden_act=raw.get("hidden_act", "relu"),
            hidden_dropout=float(raw.get("hidden_dropout_prob", 0.1)),
            attention_dropout=float(raw.get("attention_probs_dropout_prob", 0.1)),
            max_position_embeddings=int(raw["max_position_embeddings"]),
            type_vocab_size=int(raw.get("sent_type_vocab_size", raw.get("type_vocab_size", 2))),
            use_task_id=bool(raw.get("use_task_id", False)),
            task_type_vocab_size=int(raw.get("task_type_vocab_size", 3)),
            layer_norm_eps=1e-5,  # fluid.layers.layer_norm's default epsilon
            initializer_range=float(raw.get("initializer_range", 0.02)),
            preset="paddle:ernie",
        )
    except KeyError as err:
        raise CheckpointError(f"{path}: config lacks {err.args[0]!r}") from err
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: bad config: {err}") from err


def paddle_key_table(config: ErnieConfig, head: HeadKind) -> dict[str, tuple[str, bool]]:
    """Paddle parameter name -> (our key, transpose?).

    Paddle's ``fc`` stores W as (in, out) and computes x @ W; torch's Linear stores
    (out, in) and computes x @ W.T, so every ``fc`` weight (``.w_0``) is transposed.
    Embeddings, LayerNorm scales and biases keep their shape.
    """
    ours = "" if head is HeadKind.encoder else "ernie."
    table: dict[str, tuple[str, bool]] = {
        "word_embedding": ("embeddings.word_embeddings.weight", False),
        "pos_embedding": ("embeddings.position_embeddings.weight", False),
        "sent_embedding": ("embeddings.token_type_embeddings.weight", False),
        "pre_encoder_layer_norm_scale": ("embeddings.layer_norm.weight", False),
        "pre_encoder_layer_norm_bias": ("embeddings.layer_norm.bias", False),
        "pooled_fc.w_0": ("pooler.weight", True),
        "pooled_fc.b_0": ("pooler.bias", False),
    }
    if config.use_task_id:
        table["task_embedding"] = ("embeddings.task_type_embeddings.weight", False)
    for i in range(config.num_layers):
        theirs, mine = f"encoder_layer_{i}_", f"layers.{i}."
        for paddle_fc, our_linear in (("multi_head_att_query_fc", "attention.query"),
                                      ("multi_head_att_key_fc", "attention.key"),
                                      ("multi_head_att_value_fc", "attention.value"),
                                      ("multi_head_att_output_fc", "attention.output"),
                                      ("ffn_fc_0", "ffn.fc_in"), ("ffn_fc_1", "ffn.fc_out")):
            table[f"{theirs}{paddle_fc}.w_0"] = (f"{mine}{our_linear}.weight", True)
            table[f"{theirs}{paddle_fc}.b_0"] = (f"{mine}{our_linear}.bias", False)
        for paddle_norm, our_norm in (("post_att_layer_norm", "attention_norm"), ("post_ffn_layer_norm", "ffn_norm")):
            table[f"{theirs}{paddle_norm}_scale"] = (f"{mine}{our_norm}.weight", False)
            table[f"{theirs}{paddle_norm}_bias"] = (f"{mine}{our_norm}.bias", False)
    table = {name: (ours + key, transpose) for name, (key, transpose) in table.items()}
    if head is HeadKind.sequence_classification:  # ERNIE's finetune/classifier.py names
        table.update({"cls_out_w": ("classifier.weight", True), "cls_out_b": ("classifier.bias", False)})
    elif head is HeadKind.masked_lm:
        table.update({
            "mask_lm_trans_fc.w_0": ("transform.weight", True),
            "mask_lm_trans_fc.b_0": ("transform.bias", False),
            "mask_lm_trans_layer_norm_scale": ("transform_norm.weight", False),
            "mask_lm_trans_layer_norm_bias": ("transform_norm.bias", False),
            # the output projection shares word_embedding's weight (weight_sharing=True); only its bias is stored
            "mask_lm_out_fc.b_0": ("decoder_bias", False),
        })
    return table


def load_paddle_checkpoint(directory: str | os.PathLike, load_tokenizer_files: bool = True) -> LoadedCheckpoint:
    """Load an ERNIE 1.0 Paddle folder; raises :class:`CheckpointError` naming every bad parameter."""
    directory = Path(directory)
    config = read_ernie_config(directory / CONFIG_FILE)
    params_dir = directory / PARAMS_DIR
    if not params_dir.is_dir():
        raise CheckpointError(f"{params_dir}: no such folder (expected one LoDTensor file per parameter)")
    names = sorted(p.name for p in params_dir.iterdir() if p.is_file()
                   and not any(marker in p.name for marker in OPTIMIZER_STATE_MARKERS))
    if "cls_out_w" in names:
        head = HeadKind.sequence_classification
    elif "mask_lm_out_fc.b_0" in names:
        head = HeadKind.masked_lm
    else:
        head = HeadKind.encoder
    found = {name: torch.from_numpy(read_lod_tensor(params_dir / name)) for name in names
             if name not in DROPPED_PARAMS}
    table = paddle_key_table(config, head)
    # Shapes are checked in Paddle's layout so that errors name the file and the shape it holds.
    num_labels = int(found["cls_out_w"].shape[1]) if "cls_out_w" in found else 1
    model = build_model(config, head, num_labels=num_labels)
    expected = model.state_dict()
    expected_theirs = {name: (expected[key].T if transpose else expected[key]) for name, (key, transpose)
                       in table.items()}
    check_state_dict(expected_theirs, found, str(params_dir))
    state = {}
    for name, tensor in found.items():
        key, transpose = table[name]
        state[key] = (tensor.T if transpose else tensor).float().contiguous()
    model.load_state_dict(state)

    tokenizer = load_model_vocab(directory, config.vocab_size) if load_tokenizer_files else None
    meta = CheckpointMeta(head=head, tokenizer_kind="char" if tokenizer else None,
                          extra={"source": str(directory), "source_format": "paddle"})
    return LoadedCheckpoint(model=model, config=config, meta=meta, tokenizer=tokenizer)
