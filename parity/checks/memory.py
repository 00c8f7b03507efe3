"""The peak host memory ``lora-parity check`` will need, predicted before the fuse, so a machine with
too little is refused up front with one line instead of the run being killed halfway.

The model follows what the check holds at once (parity/checks/check.py, fuse.py), per dtype it checks
(one after the other, so the peak is the largest), with P the parameters of the LoRA-capable
components, s the dtype's bytes, T the parameters of the weights the files target and L those of the
largest targeted weight:

- the merge (and, on a fresh pipeline, the fuse/unfuse cycles): the pipeline and a copy of the
  targeted weights from before the fuse, P·s + T·s (untargeted weights are proven unchanged by a
  digest, the fused ones are read in place; on a model folder the targeted base values are read back
  from its checkpoint, so T drops out, parity/zoo/checkpoint.py);
- the reference, one weight at a time: its float64 base, merged, δ and |B|·|A|, and the error, bound
  and ULP arrays of the comparison, at most PER_WEIGHT_FLOAT64 float64 arrays of L elements;
- the forward budget's float64 truth: a float32 pipeline computed in float64 one module at a time,
  P·4 + T·4 (parity/checks/float64_forward.py);
- BASELINE: Python, torch, diffusers and transformers loaded, and allocator slack.

Measured on this 2-core machine, a full-size SD1.5 UNet folder (0.87 B parameters, the published
config with deterministic weights) and a kohya LoRA on attention, feed-forward, projections and the
text encoder (T = 0.28 B): see the README (Memory) for the peaks measured against this prediction.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from parity.errors import ParityInputError
from parity.lora.neutral import LoraFile
from parity.modules import lora_capable_modules

GIB = 2**30
BASELINE = 1.5e9
PER_WEIGHT_FLOAT64 = 10  # float64 arrays of one weight alive while it is compared
MEMORY_ENV = "LORA_PARITY_MEMORY_AVAILABLE"  # GiB; overrides what the machine reports (tests, containers)


@dataclass(frozen=True)
class MemoryPrediction:
    peak: float  # bytes
    parameters: int
    targeted: int
    dtype: str  # the dtype whose run peaks

    def describe(self) -> str:
        return (f"predicted peak memory {self.peak / GIB:.1f} GiB ({self.parameters / 1e9:.2f} B parameters, "
                f"{self.targeted / 1e9:.2f} B targeted, peaking in {self.dtype})")


def _parameters(components: Mapping[str, nn.Module]) -> int:
    return sum(p.numel() for model in components.values() for p in model.parameters())


def _targeted(components: Mapping[str, nn.Module], loras: Sequence[LoraFile]) -> tuple[int, int]:
    """(parameters of every targeted weight, of the largest one)."""
    modules = {c: lora_capable_modules(m) for c, m in components.items()}
    keys = {key for lora in loras for key in lora.modules}
    sizes = [modules[c][m].weight.numel() for c, m in keys if m in modules.get(c, {})]
    return sum(sizes), max(sizes, default=0)


def predict_check(components: Mapping[str, nn.Module], loras: Sequence[LoraFile],
                  dtypes: Mapping[str, torch.dtype], copies_targeted: bool = True) -> MemoryPrediction:
    """The check's peak over its dtypes, from the model it loaded and the files it read; a check on a
    model folder (``copies_targeted`` False) reads the targeted base weights back from disk."""
    p = _parameters(components)
    targeted, largest = _targeted(components, loras)
    t = targeted if copies_targeted else 0
    per_weight = PER_WEIGHT_FLOAT64 * 8 * largest
    best = None
    for name, dtype in dtypes.items():
        s = torch.empty((), dtype=dtype).element_size()
        peak = BASELINE + max((p + t) * s, (p + t) * 4) + per_weight
        if best is None or peak > best.peak:
            best = MemoryPrediction(peak, p, targeted, name)
    assert best is not None
    return best


def available_memory() -> float | None:
    """Bytes this process may still use: MEMORY_ENV (GiB) if set, else the kernel's MemAvailable."""
    if os.environ.get(MEMORY_ENV):
        try:
            return float(os.environ[MEMORY_ENV]) * GIB
        except ValueError:
            raise ParityInputError(f"{MEMORY_ENV}={os.environ[MEMORY_ENV]!r} is not a number of GiB") from None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def refuse_if_short(prediction: MemoryPrediction, available: float | None, path: str | None) -> None:
    """One line, before the run, when the prediction does not fit in what is available."""
    if available is not None and prediction.peak > available:
        raise ParityInputError(
            f"too little memory for this check: {prediction.describe()}, but only "
            f"{available / GIB:.1f} GiB are available", path=path)
