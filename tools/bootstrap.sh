#!/usr/bin/env bash
# Creates .venv and installs lora-parity into it. Idempotent: re-running only installs what changed.
#
# torch: a machine with a working NVIDIA GPU keeps the CUDA torch its python already has (the venv
# sees system site-packages); everywhere else the CPU build torch==2.13.0 is installed first, so no
# dependency can pull a multi-GB CUDA wheel onto a CPU-only machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

has_cuda_torch() {
    command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 &&
        "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1
}

if [ ! -x "$VENV/bin/python" ]; then
    if has_cuda_torch; then
        echo "bootstrap: CUDA torch found; the venv keeps it"
        "$PY" -m venv --system-site-packages "$VENV"
    else
        "$PY" -m venv "$VENV"
    fi
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "bootstrap: installing the CPU build torch==2.13.0"
    "$VENV/bin/python" -m pip install -q torch==2.13.0
fi
"$VENV/bin/python" -m pip install -q -e ".[dev,quant]" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import torch, diffusers, peft; print(f'bootstrap: torch {torch.__version__}, diffusers {diffusers.__version__}, peft {peft.__version__}')"
