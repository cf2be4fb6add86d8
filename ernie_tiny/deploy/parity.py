"""Does an exported graph compute what the torch model computes? Checked on real text.

    max |diff|   over every real (non-padding) output value: logits, or the pooled vector of encoders
    agreement    fraction of equal decisions: argmax label (per example, per token for NER),
                 sign of the ranking score
    metric delta the task's main metric (accuracy, F1, MRR) of the ONNX outputs minus torch's,
                 when the texts carry labels of the model's task

fp32 passes when max |diff| < tolerance (1e-4); int8 and fp16 change numbers by
design, so for them the report gives agreement and the metric change, not a verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from ernie_tiny.deploy.onnx_session import Precision, run_session
from ernie_tiny.tokenization.encoding import Tokenizer, pad_to_arrays
from ernie_tiny.heads import HeadKind
from ernie_tiny.tasks import Example, TaskSpec, encode_examples, evaluate, predictions_from_outputs


@dataclass
class ParityReport:
    precision: str
    examples: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float | None  # None for encoder exports (no decision to compare)
    tolerance: float | None  # fp32 only
    passed: bool | None  # fp32: max_abs_diff < tolerance; None where the precision changes numbers by design
    metric: str | None = None  # the task's main metric, when labels of the model's task were given
    torch_metric: float | None = None
    onnx_metric: float | None = None
    metric_delta: float | None = None  # onnx - torch
    source: str = ""  # where the texts came from
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        text = f"{self.precision}: max |diff| {self.max_abs_diff:.2e} on {self.examples} texts"
        if self.agreement is not None:
            text += f", agreement {100 * self.agreement:.2f}%"
        if self.metric_delta is not None:
            text += (f", {self.metric} {100 * self.torch_metric:.2f} -> {100 * self.onnx_metric:.2f} "
                     f"({100 * self.metric_delta:+.2f})")
        if self.passed is not None:
            text += " [pass]" if self.passed else " [FAIL]"
        return text


def decisions(head: HeadKind, outputs: np.ndarray) -> np.ndarray:
    """What the head decides from its outputs: argmax labels, or relevance (score > 0) for ranking."""
    return outputs > 0 if head is HeadKind.ranking else outputs.argmax(-1)


def torch_outputs(model: nn.Module, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The head's logits (or an encoder's pooled vector) from the torch model itself, as numpy."""
    inputs = {name: torch.from_numpy(value) for name, value in arrays.items()}
    with torch.inference_mode():
        output = model(**inputs)
    tensor = output.pooled_output if getattr(model, "head_kind", HeadKind.encoder) is HeadKind.encoder else output.logits
    return tensor.float().cpu().numpy()


def check_parity(model: nn.Module, session: ort.InferenceSession, tokenizer: Tokenizer, examples: list[Example],
                 task: TaskSpec | None, max_len: int, precision: Precision, tolerance: float, source: str = "",
                 batch_size: int = 16, device: str = "cpu") -> ParityReport:
    """Run ``examples`` through the torch model and the session and compare (see the module docstring)."""
    head = HeadKind(getattr(model, "head_kind", HeadKind.encoder))
    output_name = "pooled_output" if head is HeadKind.encoder else "logits"
    encoded = encode_examples(examples, tokenizer, max_len)
    diffs, agreements = [], []
    torch_rows: list[np.ndarray] = []
    onnx_rows: list[np.ndarray] = []
    for start in range(0, len(encoded), batch_size):
        encodings = [item.encoding for item in encoded.items[start:start + batch_size]]
        arrays = pad_to_arrays(encodings, pad_id=tokenizer.pad_id)
        expected = torch_outputs(model, arrays)
        actual = run_session(session, arrays)[output_name]
        for row, encoding in enumerate(encodings):
            # per-token outputs: only real tokens count (padding rows of fused attention are not defined)
            e_row = expected[row, :len(encoding)] if head is HeadKind.token_classification else expected[row]
            a_row = actual[row, :len(encoding)] if head is HeadKind.token_classification else actual[row]
            diffs.append(np.abs(e_row - a_row).ravel())
            torch_rows.append(e_row)
            onnx_rows.append(a_row)
            if head is not HeadKind.encoder:
                agreements.append((decisions(head, e_row) == decisions(head, a_row)).ravel())
    all_diffs = np.concatenate(diffs)
    report = ParityReport(
        precision=Precision(precision).value, examples=len(examples), max_abs_diff=float(all_diffs.max()),
        mean_abs_diff=float(all_diffs.mean()),
        agreement=float(np.concatenate(agreements).mean()) if agreements else None,
        tolerance=tolerance if Precision(precision) is Precision.fp32 else None,
        passed=bool(all_diffs.max() < tolerance) if Precision(precision) is Precision.fp32 else None,
        source=source, device=device)
    if task is not None and task.head is head and labels_usable(task, model):
        torch_metric = evaluate(task, predictions_from_outputs(task, torch_rows, encoded, examples), examples)
        onnx_metric = evaluate(task, predictions_from_outputs(task, onnx_rows, encoded, examples), examples)
        report.metric = task.main_metric
        report.torch_metric = torch_metric[task.main_metric]
        report.onnx_metric = onnx_metric[task.main_metric]
        report.metric_delta = report.onnx_metric - report.torch_metric
    return report


def labels_usable(task: TaskSpec, model: nn.Module) -> bool:
    """True when the task's labels index the model's outputs (same label count as the task)."""
    num_labels = getattr(model, "num_labels", 0)
    return task.head is HeadKind.ranking or num_labels == task.num_labels
