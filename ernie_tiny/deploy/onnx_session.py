"""Exported ONNX folders and onnxruntime sessions, without torch.

An export folder is self-contained::

    model.onnx             the graph (fp32, int8 or fp16), onnxruntime contrib ops after optimisation
    onnx_config.json       what the graph is: head, labels, task, tokenizer kind, inputs/outputs, fused ops
    parity.json            the export's check against the torch model
    vocab.txt, ...         the tokenizer files (``ernie_tiny.tokenization.load.load_tokenizer`` reads them)

This module and :mod:`ernie_tiny.deploy.predict` import no torch, so that serving needs
only onnxruntime and numpy.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import onnxruntime as ort

MODEL_FILE = "model.onnx"
ONNX_CONFIG_FILE = "onnx_config.json"
PARITY_FILE = "parity.json"
FORMAT_VERSION = 1
INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    fp32 = "fp32"
    int8 = "int8"  # dynamic quantisation: int8 weights, activations quantised per batch (CPU)
    fp16 = "fp16"  # half-precision weights and activations (CUDA)


class DeviceUnavailableError(RuntimeError):
    """The asked-for device has no backend here (no GPU, or a CPU-only build)."""


@dataclass
class OnnxModelConfig:
    """``onnx_config.json``: everything besides the graph that inference needs."""

    head: str  # ernie_tiny.heads.HeadKind value
    labels: list[str]
    tokenizer_kind: str | None
    precision: Precision = Precision.fp32
    outputs: list[str] = field(default_factory=lambda: ["logits"])
    inputs: list[str] = field(default_factory=lambda: list(INPUT_NAMES))
    task: str | None = None
    max_len: int = 128  # default truncation; never above max_position_embeddings
    max_position_embeddings: int = 512
    model_file: str = MODEL_FILE
    opset: int = 17
    exporter: str = "torchscript"
    fused_operators: dict[str, int] = field(default_factory=dict)
    operator_counts: dict[str, int] = field(default_factory=dict)
    model_config: dict = field(default_factory=dict)  # the ErnieConfig the graph was exported from
    provenance: dict = field(default_factory=dict)  # source checkpoint, versions, date
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.precision = Precision(self.precision)
        if self.max_len > self.max_position_embeddings:
            raise ValueError(f"max_len {self.max_len} exceeds max_position_embeddings {self.max_position_embeddings}")

    def to_dict(self) -> dict:
        values = asdict(self)
        values["precision"] = self.precision.value
        return values

    @classmethod
    def read(cls, directory: str | os.PathLike) -> "OnnxModelConfig":
        path = Path(directory) / ONNX_CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (not an `ernie-tiny export` folder)")
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
            known = set(cls.__dataclass_fields__)
            return cls(**{k: v for k, v in values.items() if k in known})
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: unreadable ONNX model config: {err}") from None
        except AttributeError:  # valid JSON, but not an object
            raise ValueError(f"{path}: unreadable ONNX model config: expected a JSON object") from None


def resolve_model_path(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(folder, model file)`` for an export folder or a ``.onnx`` file inside one."""
    path = Path(path)
    if path.is_dir():
        model_file = OnnxModelConfig.read(path).model_file if (path / ONNX_CONFIG_FILE).is_file() else MODEL_FILE
        return path, path / model_file
    if path.suffix == ".onnx" and path.is_file():
        return path.parent, path
    raise FileNotFoundError(f"{path}: neither an export folder nor an existing .onnx file")


def providers_for(device: Device | str) -> list[str]:
    """onnxruntime execution providers for ``device``; raises a one-line error when there is none."""
    device = Device(device)
    if device is Device.cpu:
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise DeviceUnavailableError(
            f"--device cuda: onnxruntime {ort.__version__} here has no CUDAExecutionProvider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu on a machine with an NVIDIA GPU")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def make_session(model_file: str | os.PathLike, device: Device | str = Device.cpu,
                 threads: int | None = None) -> ort.InferenceSession:
    """An inference session with all graph optimisations; ``threads`` sets intra-op threads (inter-op 1)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the CPU EP warns about every fp16 fallback node
    # Idle pool threads would otherwise spin after each run and steal the cores that tokenization
    # (and, in the benchmark, the next variant) runs on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = providers_for(device)
    if not Path(model_file).is_file():
        raise FileNotFoundError(f"{model_file}: no such file")
    try:
        return ort.InferenceSession(str(model_file), options, providers=providers)
    except Exception as err:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, ...), none a ValueError
        if "protobuf" in str(err).lower() or "invalid_graph" in str(err).lower() or Path(model_file).stat().st_size == 0:
            raise ValueError(f"{model_file}: not a valid ONNX model (truncated?)") from None
        raise ValueError(f"{model_file}: onnxruntime cannot load it: {str(err).splitlines()[0]}") from None


def run_session(session: ort.InferenceSession, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run on ``pad_to_arrays`` output; returns every graph output by name, as float32."""
    names = [output.name for output in session.get_outputs()]
    feeds = {i.name: arrays[i.name] for i in session.get_inputs()}
    return {name: np.asarray(value, dtype=np.float32) for name, value in zip(names, session.run(names, feeds))}
