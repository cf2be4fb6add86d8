"""Write a checkpoint as a Hugging Face folder that ``transformers`` loads without custom code.

    config.json           BertConfig (or ErnieConfig when the model adds task-type embeddings)
    model.safetensors     the weights under transformers' names (``bert.encoder.layer.0.attention.self.query...``)
    vocab.txt             the tokenizer's vocabulary
    tokenizer_config.json ours ("kind") plus transformers' keys ("tokenizer_class", specials, model_max_length)
    hf_parity.json        max |ours - transformers| on real text, when transformers is installed

Heads: encoder -> ``BertModel``; sequence classification -> ``BertForSequenceClassification``
(labels as ``id2label``); token classification -> ``BertForTokenClassification``; ranking ->
``BertForSequenceClassification`` with one output (the relevance score); masked LM ->
``BertForMaskedLM`` (decoder tied to the word embeddings). transformers builds the
token-classification and masked-LM classes without a pooler, so ours is left out there.
The key table is :func:`ernie_tiny.convert.hf.hf_key_table` read backwards, so export and
import cannot drift apart; no weight is transposed (both sides are ``nn.Linear``).

Tokenizers: a char tokenizer is BERT's basic tokenizer + WordPiece, so ``BertTokenizer`` on
the exported ``vocab.txt`` gives the same ids. A subword student's ids come from jieba (or the
release's dictionary matching) + sentencepiece under word constraints, which no stock
``transformers`` tokenizer reproduces: its folder keeps our tokenizer files, its
``tokenizer_class`` names ours so that ``AutoTokenizer`` refuses it instead of guessing, and
``ernie_tiny.tokenization.load.load_tokenizer(folder)`` encodes for it.

Usage::

    result = export_hf("runs/student/best", "exported/student-hf")
    # then, anywhere with transformers:  BertForSequenceClassification.from_pretrained("exported/student-hf")
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ernie_tiny import __version__
from ernie_tiny.checkpoint import load_pretrained
from ernie_tiny.convert.hf import hf_key_table
from ernie_tiny.tasks import Example
from ernie_tiny.heads import HeadKind
from ernie_tiny.io_utils import atomic_dir, atomic_write_json, atomic_write_text, give_ordinary_permissions
from ernie_tiny.model import ErnieConfig, encoder_of
from ernie_tiny.tokenization.batching import pad_encodings
from ernie_tiny.tokenization.encoding import CLS, MASK, PAD, SEP, UNK, Tokenizer
from ernie_tiny.tokenization.vocab_files import TOKENIZER_CONFIG

HF_CONFIG_FILE = "config.json"
HF_WEIGHTS_FILE = "model.safetensors"
HF_PARITY_FILE = "hf_parity.json"
ARCHITECTURE_SUFFIX = {
    HeadKind.encoder: "Model",
    HeadKind.sequence_classification: "ForSequenceClassification",
    HeadKind.token_classification: "ForTokenClassification",
    HeadKind.ranking: "ForSequenceClassification",  # one output: the relevance score
    HeadKind.masked_lm: "ForMaskedLM",
}
# The class subword students name in tokenizer_config.json: ours (ernie_tiny.deploy.hf_tokenizer), which no
# transformers release has, so AutoTokenizer stops with an error instead of splitting text into BERT word pieces.
SUBWORD_TOKENIZER_CLASS = "ErnieTinySubwordTokenizer"
# The module auto_map names for AutoTokenizer: one import of the class from the installed package (no copied code).
AUTO_MAP_MODULE = "tokenization_ernie_tiny"
AUTO_MAP_SOURCE = (f'"""{SUBWORD_TOKENIZER_CLASS} for AutoTokenizer(..., trust_remote_code=True): '
                   'needs `pip install ernie-tiny`."""\n\n'
                   f"from ernie_tiny.deploy.hf_tokenizer import {SUBWORD_TOKENIZER_CLASS}\n\n"
                   f'__all__ = ["{SUBWORD_TOKENIZER_CLASS}"]\n')


class HfExportError(ValueError):
    """A checkpoint that cannot be written as a transformers folder, or a parity check that failed."""


@dataclass
class HfExportResult:
    directory: Path
    architecture: str  # e.g. "BertForSequenceClassification"
    parity: dict | None  # hf_parity.json's content, None when transformers is not installed


def model_type_of(config: ErnieConfig) -> str:
    """``ernie`` when task-type embeddings are used (only ErnieModel has them), else ``bert``."""
    return "ernie" if config.use_task_id else "bert"


def hf_config(config: ErnieConfig, head: HeadKind, num_labels: int, labels: list[str]) -> dict:
    """transformers' config.json for ``config`` and ``head``."""
    model_type = model_type_of(config)
    values = {
        "architectures": [("Ernie" if model_type == "ernie" else "Bert") + ARCHITECTURE_SUFFIX[head]],
        "model_type": model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": config.hidden_act,
        "hidden_dropout_prob": config.hidden_dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size,
        "initializer_range": config.initializer_range,
        "layer_norm_eps": config.layer_norm_eps,
        "pad_token_id": config.pad_token_id,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,  # the MLM decoder is the word embedding, as ours
        "torch_dtype": "float32",
    }
    if model_type == "ernie":
        values.update(use_task_id=True, task_type_vocab_size=config.task_type_vocab_size)
    if head in (HeadKind.sequence_classification, HeadKind.token_classification):
        names = labels if len(labels) == num_labels else [f"LABEL_{i}" for i in range(num_labels)]
        values.update(id2label={str(i): name for i, name in enumerate(names)},
                      label2id={name: i for i, name in enumerate(names)})
    elif head is HeadKind.ranking:
        values.update(id2label={"0": "relevance"}, label2id={"relevance": 0}, problem_type="regression")
    return values


def hf_state_dict(model: nn.Module, head: HeadKind) -> dict[str, torch.Tensor]:
    """Our tensors under transformers' names: :func:`hf_key_table` read from our side."""
    config = encoder_of(model).config
    prefix = "" if head is HeadKind.encoder else f"{model_type_of(config)}."
    table_head = HeadKind.sequence_classification if head is HeadKind.ranking else head
    table = hf_key_table(config, table_head)  # theirs (no prefix) -> ours
    if head is HeadKind.ranking:
        table["classifier.weight"], table["classifier.bias"] = "scorer.weight", "scorer.bias"
    if head in (HeadKind.token_classification, HeadKind.masked_lm):
        # transformers builds these two without a pooler; their heads never read it
        table = {theirs: ours for theirs, ours in table.items() if not theirs.startswith("pooler.")}
    ours = model.state_dict()
    state = {}
    for theirs, key in table.items():
        name = theirs if theirs.startswith(("classifier.", "cls.")) else prefix + theirs
        state[name] = ours[key].detach().float().contiguous().cpu()
    return state


def hf_tokenizer_config(tokenizer: Tokenizer, max_len: int) -> dict:
    """transformers' tokenizer keys, merged into ours (our loaders read ``kind`` and ignore the rest)."""
    common = {"unk_token": UNK, "sep_token": SEP, "pad_token": PAD, "cls_token": CLS, "mask_token": MASK,
              "model_max_length": max_len}
    if tokenizer.kind == "char":
        return {"tokenizer_class": "BertTokenizer", "do_lower_case": tokenizer.do_lower_case,
                "tokenize_chinese_chars": True, "strip_accents": None, **common}
    return {"tokenizer_class": SUBWORD_TOKENIZER_CLASS, **common,
            # AutoTokenizer.from_pretrained(folder, trust_remote_code=True) imports our class through this
            "auto_map": {"AutoTokenizer": [f"{AUTO_MAP_MODULE}.{SUBWORD_TOKENIZER_CLASS}", None]},
            "ernie_tiny_note": "jieba/dictionary words + sentencepiece: load with "
                               "ernie_tiny.deploy.hf_tokenizer.ErnieTinySubwordTokenizer.from_pretrained(this folder), "
                               "or AutoTokenizer.from_pretrained(this folder, trust_remote_code=True); both need "
                               "the ernie-tiny package"}


def export_hf(checkpoint_dir: str | os.PathLike, out_dir: str | os.PathLike,
              parity_examples: list[Example] | None = None, tolerance: float = 1e-4,
              max_len: int = 128) -> HfExportResult:
    """Write ``checkpoint_dir`` as a transformers folder; with transformers installed, check parity on
    ``parity_examples`` (fp32, eval mode) truncated to min(``max_len``, the model's positions), and refuse
    to finish when it is above ``tolerance``."""
    if max_len < 3:
        raise HfExportError(f"max_len must be >= 3 ([CLS] x [SEP]), got {max_len}")
    loaded = load_pretrained(checkpoint_dir)
    if loaded.tokenizer is None:
        raise HfExportError(f"{checkpoint_dir}: the checkpoint holds no tokenizer files; a Hugging Face folder "
                            "needs its vocab.txt")
    model, tokenizer, head = loaded.model.eval(), loaded.tokenizer, loaded.meta.head
    config = loaded.config
    num_labels = getattr(model, "num_labels", 0)
    values = hf_config(config, head, num_labels, loaded.meta.labels)
    values["ernie_tiny"] = {"version": __version__, "source_checkpoint": str(Path(checkpoint_dir).resolve()),
                            "preset": config.preset, "task": loaded.meta.task, "tokenizer_kind": tokenizer.kind}
    parity = None
    with atomic_dir(Path(out_dir)) as tmp:
        save_file(hf_state_dict(model, head), str(tmp / HF_WEIGHTS_FILE), metadata={"format": "pt"})
        give_ordinary_permissions(tmp / HF_WEIGHTS_FILE)  # save_file writes 0600
        tokenizer.save(str(tmp))
        ours_config = json.loads((tmp / TOKENIZER_CONFIG).read_text(encoding="utf-8"))
        atomic_write_json(tmp / TOKENIZER_CONFIG, {**ours_config, **hf_tokenizer_config(
            tokenizer, config.max_position_embeddings)})
        atomic_write_json(tmp / HF_CONFIG_FILE, values)
        if tokenizer.kind != "char":
            atomic_write_text(tmp / f"{AUTO_MAP_MODULE}.py", AUTO_MAP_SOURCE)
        if parity_examples:
            parity = hf_parity(tmp, model, tokenizer, head, parity_examples, values["architectures"][0],
                               max_len=min(max_len, config.max_position_embeddings))
            if parity is not None:
                atomic_write_json(tmp / HF_PARITY_FILE, parity)
                if parity["max_abs_diff"] > tolerance:
                    raise HfExportError(f"{out_dir}: transformers differs from ours by {parity['max_abs_diff']:.2e} "
                                        f"(> {tolerance:g}) on {parity['examples']} texts")
    return HfExportResult(Path(out_dir), values["architectures"][0], parity)


def hf_parity(directory: Path, model: nn.Module, tokenizer: Tokenizer, head: HeadKind, examples: list[Example],
              architecture: str, max_len: int = 128, batch_size: int = 16) -> dict | None:
    """Max |ours - transformers| over the real tokens of ``examples`` (None without transformers)."""
    try:
        import transformers
    except ImportError:
        return None
    reference = getattr(transformers, architecture).from_pretrained(str(directory)).eval()
    worst, compared = 0.0, ""
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        batch = pad_encodings(tokenizer.encode_batch([(e.text_a, e.text_b) for e in chunk], max_len=max_len),
                              pad_id=tokenizer.pad_id)
        inputs = dict(input_ids=batch.input_ids, token_type_ids=batch.token_type_ids,
                      attention_mask=batch.attention_mask)
        with torch.no_grad():
            theirs = reference(**inputs)
            ours = model(batch.input_ids, batch.token_type_ids, batch.attention_mask)
        mask = batch.attention_mask.bool()
        if head is HeadKind.encoder:
            pairs = [(ours.last_hidden_state[mask], theirs.last_hidden_state[mask]),
                     (ours.pooled_output, theirs.pooler_output)]
            compared = "last hidden state (real tokens) and pooled output"
        elif head in (HeadKind.token_classification, HeadKind.masked_lm):
            pairs = [(ours.logits[mask], theirs.logits[mask])]
            compared = "logits of real tokens"
        else:
            pairs = [(ours.logits.reshape(len(chunk), -1), theirs.logits.reshape(len(chunk), -1))]
            compared = "logits"
        worst = max([worst] + [(a - b).abs().max().item() for a, b in pairs])
    return {"architecture": architecture, "transformers_version": transformers.__version__,
            "examples": len(examples), "compared": compared, "max_abs_diff": worst}
