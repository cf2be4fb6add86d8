"""Where a benchmark ran: device, library versions, threads, load. Written into every bench.json."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from ernie_tiny import __version__


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The int8/vector flags that decide onnxruntime's int8 kernels (VNNI) and fp32 GEMM width."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "fma"})
    return []


def describe_environment(device: str, threads: int) -> dict:
    cuda_name = torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "device": device,
        "device_name": cuda_name or cpu_name(),
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "onnxruntime_intra_op_threads": threads,
        "onnxruntime_allow_spinning": False,  # set in ernie_tiny.deploy.onnx_session.make_session
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (OpenMP default: threads spin while idle)"),
        "load_average_1_5_15": [round(v, 2) for v in load] if load else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "numpy": np.__version__,
        "ernie_tiny": __version__,
        "measured_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }


def spinning_warning(threads: int) -> str | None:
    """A warning when torch's idle OpenMP threads may spin: on a busy machine that distorts torch timings.

    Measured on a shared 2-core machine: ernie-1.0-base, batch 1 x 86 tokens, 2 threads took
    1792 ms with spinning threads and 257 ms with OMP_WAIT_POLICY=PASSIVE (1 thread: 260 ms).
    The variable is read when torch loads, so it must be set before the process starts.
    """
    if threads > 1 and os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        return (f"warning: torch runs {threads} threads and OMP_WAIT_POLICY is not PASSIVE; idle OpenMP threads "
                "spin, which on a busy machine slows torch several-fold (onnxruntime's do not spin here). "
                "Set OMP_WAIT_POLICY=PASSIVE before starting, or use --threads 1")
    return None
