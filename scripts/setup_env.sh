#!/usr/bin/env bash
# Create the virtual environment and install ernie-tiny with the right torch for this machine.
#   scripts/setup_env.sh            runtime only
#   scripts/setup_env.sh '[test]'   with the test extras
# A torch the user already has (say a CUDA build) is kept: the venv then sees the system packages.
# On a machine without an NVIDIA GPU the CPU build is installed first, so that no multi-GB CUDA
# torch is ever pulled in by the plain `torch>=2.2` requirement.
set -euo pipefail
venv=${VENV:-.venv}
python=${PYTHON:-python3}
extras=${1:-}
cpu_index=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

if [ ! -x "$venv/bin/python" ]; then
  if "$python" -c "import torch" >/dev/null 2>&1; then
    echo "setup: keeping the torch installed for $python ($("$python" -c 'import torch; print(torch.__version__)'))"
    "$python" -m venv --system-site-packages "$venv"
  else
    "$python" -m venv "$venv"
  fi
fi
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip >/dev/null 2>&1 || true

if ! "$py" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing the CUDA build of torch"
    "$py" -m pip install -q torch
  else
    echo "setup: no GPU: installing the CPU build of torch"
    # PyPI serves no "+cpu" build, so this only finds a CPU wheel already on local disk (pip's
    # find-links), failing fast elsewhere; then PyTorch's own CPU index is used.
    "$py" -m pip install -q "torch==2.13.0+cpu" 2>/dev/null \
      || "$py" -m pip install -q torch --index-url "$cpu_index"
  fi
fi
"$py" -m pip install -q -e ".${extras}"
"$py" -c "import torch, ernie_tiny; print(f'setup: ernie-tiny {ernie_tiny.__version__}, torch {torch.__version__}, cuda {torch.cuda.is_available()}')"
