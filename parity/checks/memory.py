"""The peak host memory ``lora-parity check`` will need, predicted before the fuse, so a machine with
too little is refused up front with one line instead of the run being killed halfway.

The model follows what the check holds at once (parity/checks/check.py, fuse.py), per dtype it checks
(one after the other, so the peak is the largest), with P the parameters of every model the pipeline
holds (not only the LoRA-capable ones), s the dtype's bytes, T the parameters of the weights the files
target and L those of the largest targeted weight:

- the pipeline, with the files loaded, on which the merge check and the fuse/unfuse cycles run one
  after the other, and a copy of the targeted weights from before the fuse, P·s + T·s (untargeted
  weights are proven unchanged by a digest, the fused ones are read in place; on a model folder the
  targeted base values are read back from its checkpoint, so T drops out, parity/zoo/checkpoint.py);
  the files' A tensor elements, held as read (taken as 4 bytes) and as PEFT's layers, A·(4 + s);
- then the comparison, one weight at a time in one pass (parity/fused_comparison.py): the weight's base
  value read back and its value after the fuse, 2·L·s, and of one block of its rows (at most
  CHUNK_ELEMENTS elements) BLOCK_BYTES per element: both values on the host as float32 and a full
  difference's δ in float64 (the reference, bound and error of an element live in a row's buffers);
- or, before the first dtype's fuse only, the forward budget's float64 truth (check.py,
  _load_with_truth): one module in float64 at a time, READ_BYTES per element of the largest tensor,
  and the freed heap a float64 run may leave, FREE_HEAP_LIMIT; in a dtype other than float32 also the
  adapters loaded in float64, A·8, and on the tiny zoo the float32 build the values come from, P·4;
- BASELINE: Python, torch, diffusers and transformers loaded, and allocator slack.

Measured on this 2-core machine on full-size SD1.5 and SDXL folders and full-width FLUX.1 and Qwen-Image
folders with one block (the published configs, deterministic weights: `lora-parity model`), each stored in
the dtype checked, with kohya or diffusers rank-8 files on the default targets: docs/checking-files.md (Memory) gives
the peaks beside this prediction, which is above each of them (a float32 folder loaded into bfloat16
aside: diffusers maps the file while it loads, before the prediction is made).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from parity.errors import ParityInputError
from parity.fused_comparison import CHUNK_ELEMENTS
from parity.lora.neutral import LoraFile
from parity.modules import lora_capable_modules

GIB = 2**30
BASELINE = 1.5e9
BLOCK_BYTES = 16  # per element of a block of rows compared: fused and base as float32, a difference's δ
READ_BYTES = 12  # per element of any other weight in a float64 run: the stored float32 value read, its float64
MEMORY_ENV = "LORA_PARITY_MEMORY_AVAILABLE"  # GiB; overrides what the machine reports (tests, containers)

# bytes glibc may keep freed in its heap before a float64 run hands them back (fresh_copies.release_free_heap)
FREE_HEAP_LIMIT = 256 * 2**20


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


def _largest_parameter(models: Mapping[str, nn.Module]) -> int:
    return max((x.numel() for model in models.values() for x in model.parameters()), default=0)


def _targeted(components: Mapping[str, nn.Module], loras: Sequence[LoraFile]) -> tuple[int, int]:
    """(parameters of every targeted weight, of the largest one)."""
    modules = {c: lora_capable_modules(m) for c, m in components.items()}
    keys = {key for lora in loras for key in lora.modules}
    sizes = [modules[c][m].weight.numel() for c, m in keys if m in modules.get(c, {})]
    return sum(sizes), max(sizes, default=0)


def _adapter_parameters(loras: Sequence[LoraFile]) -> int:
    """Elements of every tensor the files hold (factors, differences, biases)."""
    tensors = [getattr(m, field, None) for lora in loras for m in lora.modules.values()
               for field in ("down", "up", "diff", "bias")]
    return sum(t.numel() for t in tensors if isinstance(t, torch.Tensor))


def predict_check(components: Mapping[str, nn.Module], loras: Sequence[LoraFile],
                  dtypes: Mapping[str, torch.dtype], copies_targeted: bool = True) -> MemoryPrediction:
    """The check's peak over its dtypes (in the order they run: the first computes the float64 truth),
    from the model it loaded and the files it read; a check on a model folder (``copies_targeted``
    False) reads the targeted base weights back from disk."""
    p = _parameters(components)
    targeted, largest = _targeted(components, loras)
    t = targeted if copies_targeted else 0
    a = _adapter_parameters(loras)
    block = BLOCK_BYTES * min(largest, CHUNK_ELEMENTS)
    largest_tensor = _largest_parameter(components)
    best = None
    for index, (name, dtype) in enumerate(dtypes.items()):
        s = torch.empty((), dtype=dtype).element_size()
        measure = 2 * largest * s + block
        truth = 0
        if index == 0:
            truth = READ_BYTES * largest_tensor + FREE_HEAP_LIMIT
            if dtype != torch.float32:
                truth += a * 8 + (p * 4 if copies_targeted else 0)
        peak = BASELINE + (p + t) * s + a * (4 + s) + max(measure, truth)
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


def refuse_if_short(prediction: MemoryPrediction, available: float | None, path: str | None, hint: str = "") -> None:
    """One line, before the run, when the prediction does not fit in what is available; ``hint``: why
    nothing smaller was tried, and what would fit (parity/zoo/route.py)."""
    if available is not None and prediction.peak > available:
        raise ParityInputError(
            f"too little memory for this check: {prediction.describe()}, but only "
            f"{available / GIB:.1f} GiB are available" + (f" ({hint})" if hint else ""), path=path)


def gate_memory(prediction: MemoryPrediction, note: Callable[[str], None], path: str | None, hint: str = "") -> None:
    """The prediction and what is available, passed to ``note`` (printed before a long run); then
    ``refuse_if_short``."""
    available = available_memory()
    note(f"memory: {prediction.describe()}" + (f"; {available / GIB:.1f} GiB available" if available is not None
                                              else ""))
    refuse_if_short(prediction, available, path, hint)


PER_WEIGHT_HOTSWAP = 6  # float64 arrays of a targeted weight alive in a float64 run: its value and the merge's


def _lora_layers(models: Mapping[str, nn.Module], loras: Sequence[LoraFile], component: str, rank: int) -> int:
    """Parameters of ``component``'s LoRA layers at ``rank``, over every module a file targets."""
    modules = lora_capable_modules(models[component])
    total = 0
    for c, m in {key for lora in loras for key in lora.modules}:
        if c == component and m in modules:
            weight = modules[m].weight
            total += rank * (weight[0].numel() + weight.shape[0])  # down: rank × in·k·k, up: out × rank
    return total


def predict_hotswap(models: Mapping[str, nn.Module], loras: Sequence[LoraFile], dtype: torch.dtype,
                    target_rank: int, denoiser: str, float32_build: bool = False, experts: int = 1) -> MemoryPrediction:
    """The hotswap check's peak, from the pipeline it loaded (``models``: every model in it, the VAE
    too, as a pipeline-level swap runs them all) and the files it read.

    What it holds at once (parity/checks/hotswap.py, fresh_copies.py): the session's pipeline, P·s;
    the LoRA layers of the session and of one fresh load, padded to ``target_rank``, in the dtype and
    in float64 (the float64 runs' own), F·(2s + 8); one weight in float64, READ_BYTES per element of
    the largest, or PER_WEIGHT_HOTSWAP float64 arrays of the largest targeted one (the merge); the freed
    heap a float64 run may leave before it is handed back, FREE_HEAP_LIMIT; on the tiny zoo in a dtype
    other than float32 (``float32_build``), the float32 build the float64 values come from, P·4. Fresh
    loads share the session's weights; a float64 run holds one module's weights at a time. The load
    itself is over by then and not predicted: diffusers loading a float32 folder into bfloat16 maps
    the whole file beside the model it builds. A session swapping ``experts`` denoisers of one shape (Wan
    2.2's both) holds the files' layers in each: they are read against ``denoiser``, the first.
    """
    p = _parameters(models)
    s = torch.empty((), dtype=dtype).element_size()
    f = experts * _lora_layers(models, loras, denoiser, target_rank)
    largest = _largest_parameter(models)
    targeted, largest_targeted = _targeted(models, loras)
    per_weight = max(READ_BYTES * largest, PER_WEIGHT_HOTSWAP * 8 * largest_targeted)
    peak = BASELINE + p * s + f * (2 * s + 8) + per_weight + FREE_HEAP_LIMIT + (p * 4 if float32_build else 0)
    return MemoryPrediction(peak, p, targeted, str(dtype).removeprefix("torch."))
