"""Load a Hugging Face ``ErnieModel``/``BertModel`` folder (and its heads) into our model.

A folder holds ``config.json`` (``model_type`` "ernie" or "bert"), ``model.safetensors``
or ``pytorch_model.bin``, and ``vocab.txt`` -- as in the public ERNIE 1.0 PyTorch port
``nghuyong/ernie-1.0-base-zh``. Their key names become ours through the explicit table
in :func:`hf_key_table`; every key and shape is checked, nothing is guessed.

Usage::

    loaded = load_hf_checkpoint("ernie-1.0-base-zh/")
    loaded.model, loaded.config.describe(), loaded.tokenizer
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ernie_tiny.checkpoint import CheckpointError, CheckpointMeta, LoadedCheckpoint, check_state_dict
from ernie_tiny.convert.ernie_tiny_release import refuse_subword_vocab_as_char, release_tokenizer_beside
from ernie_tiny.model import ACTIVATIONS, ErnieConfig, HeadKind, build_model
from ernie_tiny.tokenization.char import load_model_vocab

SUPPORTED_MODEL_TYPES = ("ernie", "bert")
# The architecture named in config.json says which head the weights carry.
ARCHITECTURE_HEADS = {
    "Model": HeadKind.encoder,
    "ForSequenceClassification": HeadKind.sequence_classification,
    "ForTokenClassification": HeadKind.token_classification,
    "ForMaskedLM": HeadKind.masked_lm,
    "ForPreTraining": HeadKind.masked_lm,  # its next-sentence head is dropped, see DROPPED_KEYS
}
# Keys we read and then leave out, each with the reason.
DROPPED_KEYS = {
    "embeddings.position_ids": "a constant arange buffer that older transformers versions saved",
    "cls.seq_relationship.weight": "next-sentence-prediction head: ernie-tiny has no NSP task",
    "cls.seq_relationship.bias": "next-sentence-prediction head: ernie-tiny has no NSP task",
}


def hf_config_to_ernie(hf: dict, source: str) -> ErnieConfig:
    """Our :class:`ErnieConfig` from a transformers ``config.json`` dict (preset ``hf:<model_type>``)."""
    # Early PyTorch ports (nghuyong's ERNIE 1.0 / ERNIE-tiny scripts) saved ERNIE's own config without a
    # model_type; their weights are BertModel's.
    model_type = hf.get("model_type", "bert" if is_legacy_port_config(hf) else None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise CheckpointError(f"{source}: model_type {model_type!r} is not one of {SUPPORTED_MODEL_TYPES}")
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"{source}: position_embedding_type {hf['position_embedding_type']!r} "
                              "is not supported (only 'absolute')")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise CheckpointError(f"{source}: decoder / cross-attention models are not supported")
    if hf.get("hidden_act", "gelu") not in ACTIVATIONS:
        raise CheckpointError(f"{source}: hidden_act {hf['hidden_act']!r} is not one of {sorted(ACTIVATIONS)}")
    try:
        return ErnieConfig(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            num_layers=int(hf["num_hidden_layers"]),
            num_heads=int(hf["num_attention_heads"]),
            intermediate_size=int(hf["intermediate_size"]),
            hidden_act=hf.get("hidden_act", "gelu"),
            hidden_dropout=float(hf.get("hidden_dropout_prob", 0.1)),
            attention_dropout=float(hf.get("attention_probs_dropout_prob", 0.1)),
            max_position_embeddings=int(hf.get("max_position_embeddings", 512)),
            type_vocab_size=int(hf.get("type_vocab_size", hf.get("sent_type_vocab_size", 2))),
            use_task_id=bool(hf.get("use_task_id", False)),  # ERNIE 2.0-style task embedding (ernie only)
            task_type_vocab_size=int(hf.get("task_type_vocab_size", 3)),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),  # transformers' default, not Paddle's
            initializer_range=float(hf.get("initializer_range", 0.02)),
            pad_token_id=int(hf.get("pad_token_id") or 0),
            preset=f"hf:{model_type}",
        )
    except KeyError as err:
        raise CheckpointError(f"{source}: config lacks {err.args[0]!r}") from err
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source}: bad config: {err}") from err


def is_legacy_port_config(hf: dict) -> bool:
    """A config.json with BERT's size keys but no model_type/architectures: an early ERNIE PyTorch port."""
    return ("model_type" not in hf and "architectures" not in hf
            and all(key in hf for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")))


def hf_key_table(config: ErnieConfig, head: HeadKind) -> dict[str, str]:
    """Their key (without the ``ernie.``/``bert.`` prefix) -> our key, for ``config`` and ``head``.

    No weight is transposed: both sides are ``torch.nn.Linear`` (out, in).
    """
    ours = "" if head is HeadKind.encoder else "ernie."  # head models keep the encoder under .ernie
    table = {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        # transformers keeps the name "LayerNorm" to load TensorFlow checkpoints; ours is layer_norm
        "embeddings.LayerNorm.weight": "embeddings.layer_norm.weight",
        "embeddings.LayerNorm.bias": "embeddings.layer_norm.bias",
        "pooler.dense.weight": "pooler.weight",  # BertPooler wraps one Linear; ours is the Linear
        "pooler.dense.bias": "pooler.bias",
    }
    if config.use_task_id:
        table["embeddings.task_type_embeddings.weight"] = "embeddings.task_type_embeddings.weight"
    for i in range(config.num_layers):
        theirs, mine = f"encoder.layer.{i}.", f"layers.{i}."
        for param in ("weight", "bias"):
            table.update({
                f"{theirs}attention.self.query.{param}": f"{mine}attention.query.{param}",
                f"{theirs}attention.self.key.{param}": f"{mine}attention.key.{param}",
                f"{theirs}attention.self.value.{param}": f"{mine}attention.value.{param}",
                # BertSelfOutput = output projection + the post-attention LayerNorm
                f"{theirs}attention.output.dense.{param}": f"{mine}attention.output.{param}",
                f"{theirs}attention.output.LayerNorm.{param}": f"{mine}attention_norm.{param}",
                f"{theirs}intermediate.dense.{param}": f"{mine}ffn.fc_in.{param}",
                # BertOutput = FFN second Linear + the post-FFN LayerNorm
                f"{theirs}output.dense.{param}": f"{mine}ffn.fc_out.{param}",
                f"{theirs}output.LayerNorm.{param}": f"{mine}ffn_norm.{param}",
            })
    table = {key: ours + value for key, value in table.items()}
    if head in (HeadKind.sequence_classification, HeadKind.token_classification):
        table.update({"classifier.weight": "classifier.weight", "classifier.bias": "classifier.bias"})
    elif head is HeadKind.masked_lm:
        table.update({
            "cls.predictions.transform.dense.weight": "transform.weight",
            "cls.predictions.transform.dense.bias": "transform.bias",
            "cls.predictions.transform.LayerNorm.weight": "transform_norm.weight",
            "cls.predictions.transform.LayerNorm.bias": "transform_norm.bias",
            # decoder.weight is tied to the word embeddings and decoder.bias to this one: see tied_copies
            "cls.predictions.bias": "decoder_bias",
        })
    return table


def read_hf_weights(directory: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The state dict in ``model.safetensors`` or ``pytorch_model.bin`` (tensors only, no pickled code)."""
    safetensors_path, bin_path = directory / "model.safetensors", directory / "pytorch_model.bin"
    if safetensors_path.is_file():
        try:
            return load_file(str(safetensors_path)), safetensors_path
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{safetensors_path}: unreadable weights: {err}") from err
    if bin_path.is_file():
        try:
            state = torch.load(bin_path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for corrupt/unsafe pickles
            raise CheckpointError(f"{bin_path}: unreadable weights: {err}") from err
        if not isinstance(state, dict):
            raise CheckpointError(f"{bin_path}: expected a state dict, got {type(state).__name__}")
        return state, bin_path
    if any(directory.glob("*.index.json")):
        raise CheckpointError(f"{directory}: sharded checkpoints are not supported; merge the shards first")
    raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin")


def strip_prefix(state: dict[str, torch.Tensor], model_type: str) -> dict[str, torch.Tensor]:
    """Drop the ``ernie.``/``bert.`` prefix of head models, and rename pre-2019 ``gamma``/``beta``."""
    out = {}
    for key, tensor in state.items():
        for prefix in (f"{model_type}.", "ernie.", "bert."):
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        if key.endswith("LayerNorm.gamma"):  # the original TF-port names of LayerNorm weight/bias
            key = key[: -len("gamma")] + "weight"
        elif key.endswith("LayerNorm.beta"):
            key = key[: -len("beta")] + "bias"
        out[key] = tensor
    return out


def head_of(hf: dict, source: str) -> HeadKind:
    architectures = hf.get("architectures") or []
    if not architectures:
        return HeadKind.encoder
    name = architectures[0]
    for suffix, head in ARCHITECTURE_HEADS.items():
        if name.endswith(suffix) and name[: -len(suffix)] in ("Ernie", "Bert"):
            return head
    raise CheckpointError(f"{source}: architecture {name!r} is not supported; expected Ernie/Bert + one of "
                          f"{', '.join(ARCHITECTURE_HEADS)}")


def load_hf_checkpoint(directory: str | os.PathLike, load_tokenizer_files: bool = True) -> LoadedCheckpoint:
    """Load a transformers Ernie/Bert folder; raises :class:`CheckpointError` naming every bad key."""
    directory = Path(directory)
    config_path = directory / "config.json"
    try:
        hf = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{config_path}: unreadable config: {err}") from err
    config = hf_config_to_ernie(hf, str(config_path))
    head = head_of(hf, str(config_path))
    found, weights_path = read_hf_weights(directory)
    found = strip_prefix(found, hf.get("model_type", "bert"))

    # Tied copies: must equal the tensor they are tied to, then they are dropped.
    tied_copies = {"cls.predictions.decoder.weight": "embeddings.word_embeddings.weight",
                   "cls.predictions.decoder.bias": "cls.predictions.bias"}
    if "cls.predictions.decoder.bias" in found and "cls.predictions.bias" not in found:
        found["cls.predictions.bias"] = found.pop("cls.predictions.decoder.bias")  # some ports keep only this one
    for copy, original in tied_copies.items():
        if copy in found and original in found:
            if found[copy].shape != found[original].shape or not torch.equal(found[copy], found[original]):
                raise CheckpointError(f"{weights_path}: {copy} is not tied to {original}; untied MLM decoders "
                                      "are not supported")
            del found[copy]
    for key in DROPPED_KEYS:
        found.pop(key, None)

    num_labels = int(found["classifier.weight"].shape[0]) if "classifier.weight" in found else 1
    table = hf_key_table(config, head)
    initialised = []
    # transformers builds *ForMaskedLM and *ForTokenClassification without a pooler (their heads do not
    # use it); ours always has one, so it keeps its fresh initialisation and meta.extra says so.
    if head in (HeadKind.masked_lm, HeadKind.token_classification) and "pooler.dense.weight" not in found:
        initialised = [table.pop("pooler.dense.weight"), table.pop("pooler.dense.bias")]
    model = build_model(config, head, num_labels=num_labels)
    expected = model.state_dict()
    # Compare in their names so that errors name the keys as they are spelled in the file.
    expected_theirs = {theirs: expected[ours] for theirs, ours in table.items()}
    check_state_dict(expected_theirs, found, str(weights_path))
    model.load_state_dict({table[key]: tensor.float() for key, tensor in found.items()}, strict=False)
    tokenizer = None
    if load_tokenizer_files:
        # an ERNIE-tiny port: its subword tokenizer when the release files sit beside the weights
        tokenizer = release_tokenizer_beside(directory, config.vocab_size)
        if tokenizer is None:
            refuse_subword_vocab_as_char(directory)
            tokenizer = load_model_vocab(directory, config.vocab_size)
    labels = [str(hf["id2label"][key]) for key in sorted(hf.get("id2label") or {}, key=int)]
    meta = CheckpointMeta(head=head, labels=labels if len(labels) == num_labels and head is not HeadKind.masked_lm
                          else [], tokenizer_kind=tokenizer.kind if tokenizer else None,
                          extra={"source": str(directory), "source_format": "hf", "initialised": initialised})
    return LoadedCheckpoint(model=model, config=config, meta=meta, tokenizer=tokenizer)

