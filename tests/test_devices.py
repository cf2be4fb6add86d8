"""The one --device parser: auto / cpu / cuda / cuda:N, one clear line for a device that is not there."""

import subprocess
import sys

import pytest
import torch

from ernie_tiny.devices import DeviceError, parse_device, resolve_device


class FakeCuda:
    """torch.cuda as a machine with ``count`` GPUs shows it."""

    def __init__(self, count: int):
        self.count = count

    def is_available(self) -> bool:
        return self.count > 0

    def device_count(self) -> int:
        return self.count


@pytest.mark.parametrize("text, kind, index", [("auto", "auto", None), ("CPU", "cpu", None), ("cuda", "cuda", None),
                                               ("cuda:3", "cuda", 3), (" cuda:0 ", "cuda", 0)])
def test_parse_accepts_the_four_forms(text, kind, index):
    spec = parse_device(text)
    assert (spec.kind, spec.index) == (kind, index)


@pytest.mark.parametrize("text", ["tpu", "mps", "cuda:", "cuda:-1", "cuda:x", "gpu", ""])
def test_parse_refuses_anything_else_in_one_line(text):
    with pytest.raises(DeviceError, match="unknown device; use auto, cpu, cuda or cuda:N") as err:
        parse_device(text)
    assert "\n" not in str(err.value)


def test_auto_is_cuda_only_when_torch_sees_a_gpu(monkeypatch):
    monkeypatch.setattr(torch, "cuda", FakeCuda(0))
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch, "cuda", FakeCuda(1))
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cpu") == "cpu"


def test_cuda_without_a_gpu_and_a_missing_gpu_index_are_one_line(monkeypatch):
    monkeypatch.setattr(torch, "cuda", FakeCuda(0))
    with pytest.raises(DeviceError, match=r"^--device cuda: torch .* sees no CUDA GPU .*; use --device cpu$"):
        resolve_device("cuda")
    monkeypatch.setattr(torch, "cuda", FakeCuda(1))
    assert resolve_device("cuda:0") == "cuda:0" and resolve_device("cuda") == "cuda"
    with pytest.raises(DeviceError, match=r"^--device cuda:7: no GPU 7: torch sees 1 \(cuda:0 to cuda:0\)"):
        resolve_device("cuda:7")


def test_first_gpu_only_commands_refuse_an_index(monkeypatch):
    monkeypatch.setattr(torch, "cuda", FakeCuda(2))
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(DeviceError, match="CUDA_VISIBLE_DEVICES=1"):
        resolve_device("cuda:1", any_gpu=False)


def test_onnxruntime_auto_and_cuda_follow_its_providers(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert resolve_device("auto", runtimes=("onnxruntime",)) == "cpu"
    with pytest.raises(DeviceError, match="no CUDAExecutionProvider"):
        resolve_device("cuda", runtimes=("onnxruntime",))
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert resolve_device("auto", runtimes=("onnxruntime",)) == "cuda"
    monkeypatch.setattr(torch, "cuda", FakeCuda(0))  # both runtimes asked: auto needs a GPU for each
    assert resolve_device("auto", runtimes=("torch", "onnxruntime")) == "cpu"


def test_the_parser_imports_no_runtime():
    code = ("import sys; from ernie_tiny.devices import parse_device, resolve_device; parse_device('cuda:1'); "
            "resolve_device('cpu'); print(sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
