"""The one ``--device`` parser of every command: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

Commands resolve the device before they write anything, so a device that is not
there ends the command with one line and leaves no half-made output folder. The
module imports neither torch nor onnxruntime (``predict`` runs without torch); each
runtime is imported inside the function that asks it what it sees.

    resolve_device("auto")                           # "cuda" when torch sees a GPU, else "cpu"
    resolve_device("cuda:1")                         # "cuda:1", or DeviceError when there is no GPU 1
    resolve_device("auto", runtimes=("onnxruntime",))  # "cuda" only with onnxruntime-gpu's CUDA provider
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

AUTO = "auto"
DEVICE_HELP = "auto (cuda when available, else cpu), cpu, cuda or cuda:N."
RUNTIMES = ("torch", "onnxruntime")


class DeviceError(ValueError):
    """A ``--device`` that is unknown or not available here; the message is one line that says what is."""


@dataclass(frozen=True)
class DeviceSpec:
    """What the user asked for: ``kind`` is ``auto``, ``cpu`` or ``cuda``; ``index`` the N of ``cuda:N``."""

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def parse_device(text: str) -> DeviceSpec:
    """The spec of ``text``; raises :class:`DeviceError` for anything but auto, cpu, cuda and cuda:N."""
    value = str(text).strip().lower()
    if value in (AUTO, "cpu", "cuda"):
        return DeviceSpec(value)
    match = re.fullmatch(r"cuda:(\d+)", value)
    if match is None:
        raise DeviceError(f"--device {text}: unknown device; use auto, cpu, cuda or cuda:N")
    return DeviceSpec("cuda", int(match.group(1)))


def torch_cuda_problem(spec: DeviceSpec) -> str | None:
    """Why torch cannot run on ``spec`` (a cuda spec), or None when it can."""
    import torch

    if not torch.cuda.is_available():
        why = "a CPU-only build" if torch.version.cuda is None else "no GPU or driver visible"
        return f"torch {torch.__version__} sees no CUDA GPU ({why})"
    count = torch.cuda.device_count()
    if spec.index is not None and spec.index >= count:
        return f"no GPU {spec.index}: torch sees {count} (cuda:0 to cuda:{count - 1})"
    return None


def onnxruntime_cuda_problem(spec: DeviceSpec) -> str | None:
    """Why onnxruntime cannot run on ``spec`` (a cuda spec), or None when it can."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return (f"onnxruntime {ort.__version__} here has no CUDAExecutionProvider (available: "
                f"{', '.join(available)}); install onnxruntime-gpu on a machine with an NVIDIA GPU")
    return None


def resolve_device(text: str, runtimes: Collection[str] = ("torch",), any_gpu: bool = True) -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` that every runtime in ``runtimes`` can use.

    ``auto`` is cuda when each runtime sees a GPU, else cpu. An explicit cuda device that
    a runtime cannot use raises :class:`DeviceError` naming the runtime and the reason.
    ``any_gpu=False`` (and onnxruntime, whose sessions here take no GPU index) accept
    only the first visible GPU: ``cuda`` or ``cuda:0``.
    """
    if not runtimes or any(r not in RUNTIMES for r in runtimes):
        raise ValueError(f"runtimes must be some of {RUNTIMES}, got {list(runtimes)}")
    spec = parse_device(text)
    if spec.kind == "cpu":
        return "cpu"
    if spec.index not in (None, 0) and (not any_gpu or "onnxruntime" in runtimes):
        raise DeviceError(f"--device {text}: this command runs on the first visible GPU; "
                          f"choose it with CUDA_VISIBLE_DEVICES={spec.index} and --device cuda")
    checks = {"torch": torch_cuda_problem, "onnxruntime": onnxruntime_cuda_problem}
    problems = [problem for problem in (checks[runtime](spec) for runtime in runtimes) if problem]
    if spec.kind == AUTO:
        return "cpu" if problems else "cuda"
    if problems:
        raise DeviceError(f"--device {text}: {'; '.join(problems)}; use --device cpu")
    return str(spec)
