"""Fresh loads for the hotswap check without a second copy of the model.

A swap is compared with a fresh load of the same file, and with float64 runs of that load and of our
merge. Each used to be a pipeline of its own (one in float64: twice a float32 model). Here each is a
copy of the session's pipeline taken before its first load (:func:`pristine_copy`), whose module
objects are new and whose tensors are not:

- :func:`aliased_copy`, in the session's dtype: every parameter and buffer a new tensor on the
  session's storage, so diffusers loads the file into a fresh module tree at no cost in memory;
- :func:`float64_copy`: every floating parameter a float64 stand-in of its shape on no storage
  (stride 0), given its float64 value just before its module's forward and dropped just after, so
  the pipeline sees float64 modules (it casts between stages by their dtype) while at most one
  module's float64 weights are alive. Its output is bit for bit a float64 pipeline's
  (tests/harness/test_fresh_copies.py).

Sharing storage assumes the swap leaves the base weights as loaded; :func:`changed_tensors` proves
it against digests taken before the first load.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from parity.checks.float64_forward import Float64Arena
from parity.checks.fuse import Digest, digests_of
from parity.checks.memory import FREE_HEAP_LIMIT
from parity.modules import live_weights, pipeline_models
from parity.zoo import build_pipeline
from parity.zoo.checkpoint import CheckpointWeights
from parity.zoo.family import Family

# (component, parameter name in the pristine model) → that tensor's value, in a dtype that holds it exactly
# (its stored dtype, float32 or float64): the float64 copy converts it into float64 storage it reuses
Values = Callable[[str, str], torch.Tensor]
BIG_MODULE = 2**20  # float64 bytes of a module's weights above which its forward is followed by that check


def _tensors(pipe: Any) -> Iterator[tuple[str, str, torch.Tensor, bool]]:
    """(component, name, tensor, is a parameter) for every tensor of every model, tied ones once each."""
    for component, model in pipeline_models(pipe).items():
        for name, p in model.named_parameters():
            yield component, name, p, True
        for name, b in model.named_buffers():
            yield component, name, b, False


def pristine_copy(pipe: Any) -> Any:
    """``pipe`` before any LoRA: new module objects holding the very same tensors (no memory)."""
    return copy.deepcopy(pipe, {id(t): t for _, _, t, _ in _tensors(pipe)})


def aliased_copy(pristine: Any) -> Any:
    """A fresh pipeline in the pristine's dtype whose tensors are new objects on its storage: what a
    load does to this copy (new LoRA layers, requires_grad flags) never reaches the session."""
    memo: dict[int, Any] = {}
    for _, _, t, is_param in _tensors(pristine):
        memo[id(t)] = nn.Parameter(t.detach(), requires_grad=t.requires_grad) if is_param else t.detach()
    return copy.deepcopy(pristine, memo)


def _stand_in(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(torch.zeros((), dtype=torch.float64, device=t.device).expand(t.shape), requires_grad=False)


def _named_tensors(pipe: Any) -> dict[str, dict[str, torch.Tensor]]:
    return {c: {**dict(m.named_parameters()), **dict(m.named_buffers())} for c, m in pipeline_models(pipe).items()}


def stored_values(pipe: Any, family: Family, dtype: torch.dtype, model_path: str | None,
                  device: str | torch.device) -> Values:
    """Each base tensor's value as a float64 load of the model gives it, for ``pipe`` (in ``dtype``, no
    LoRA loaded): a float32 pipeline's own (which holds a float16/bfloat16/float32 checkpoint exactly);
    else read from the folder's checkpoint one tensor at a time, or, for the tiny zoo, from its float32
    build."""
    tensors = _named_tensors(pipe)
    if dtype == torch.float32:
        return lambda component, name: tensors[component][name]
    if model_path is None:
        float32 = _named_tensors(build_pipeline(family, device=str(device)))
        return lambda component, name: float32[component][name]
    checkpoint = CheckpointWeights(model_path)

    def read(component: str, name: str) -> torch.Tensor:
        stored = checkpoint.read(component, name, tensors[component][name], keep_dtype=True)
        # Not in the folder (a buffer the model computes when built): the pipeline's own value.
        return stored if stored is not None else tensors[component][name]

    return read


def float64_copy(pristine: Any, values: Values) -> Any:
    """A fresh pipeline that computes in float64, each floating tensor taking ``values``' value.

    Buffers are small and kept in float64 for the copy's life; parameters are filled per forward of
    the module that owns them (a module that reads another's parameter would see zeros: the bit for
    bit test against a float64 pipeline covers every family).
    """
    memo: dict[int, Any] = {}
    owners: dict[int, tuple[str, str]] = {}
    for component, name, t, is_param in _tensors(pristine):
        if not t.is_floating_point():
            memo[id(t)] = t
        elif is_param:
            memo[id(t)] = _stand_in(t)
            owners[id(memo[id(t)])] = (component, name)
        else:
            memo[id(t)] = values(component, name).double()
    pipe = copy.deepcopy(pristine, memo)
    arena = Float64Arena()
    for model in pipeline_models(pipe).values():
        for module in model.modules():
            own = [(p, owners[id(p)]) for p in module.parameters(recurse=False) if id(p) in owners]
            if own:
                module.register_forward_pre_hook(_filler(own, values, arena))
                module.register_forward_hook(_emptier(own, arena), always_call=True)
    return pipe


def _filler(own: list[tuple[nn.Parameter, tuple[str, str]]], values: Values,
            arena: Float64Arena) -> Callable[..., None]:
    def fill(module: nn.Module, args: Any) -> None:
        copies, mark = arena.take([values(component, name) for _, (component, name) in own])
        module._parity_arena_mark = mark
        for (p, _), copy64 in zip(own, copies):
            p.data = copy64

    return fill


def _emptier(own: list[tuple[nn.Parameter, tuple[str, str]]], arena: Float64Arena) -> Callable[..., None]:
    big = 8 * sum(p.numel() for p, _ in own) > BIG_MODULE

    def empty(module: nn.Module, args: Any, output: Any) -> None:
        device = own[0][0].device
        for p, _ in own:
            p.data = _stand_in(p)
        mark = module.__dict__.pop("_parity_arena_mark", None)
        if mark is not None:
            arena.give_back(mark, device)
        if big:
            release_free_heap()

    return empty


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@functools.cache
def _glibc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallinfo2.restype = _Mallinfo2
        libc.malloc_trim  # noqa: B018 — both or neither
    except (OSError, AttributeError, TypeError):
        return None  # not glibc (macOS, musl): nothing to do
    return libc


def release_free_heap(limit: int = FREE_HEAP_LIMIT) -> None:
    """Hand freed heap memory back to the system once more than ``limit`` bytes of it pile up.

    A float64 run frees one module's weights after another; glibc keeps blocks under its mmap
    threshold (raised to 32 MiB by the first larger free) in its heap, where the small allocations
    that outlive them keep it from returning them: on a full-size SD1.5 UNet the heap grew 1.4 GiB
    over one float64 pipeline call. ``malloc_trim`` returns the free pages inside the heap.
    """
    libc = _glibc()
    if libc is not None and libc.mallinfo2().fordblks > limit:
        libc.malloc_trim(0)


class LazyComponent(Mapping[str, torch.Tensor]):
    """One component's tensors as ``values`` gives them, each read when asked for (the base weights
    parity.reference.merge reads, one at a time)."""

    def __init__(self, values: Values, component: str, names: list[str]) -> None:
        self.values, self.component, self.names = values, component, names

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.values(self.component, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def lazy_weights(pristine: Any, values: Values) -> dict[str, LazyComponent]:
    """component → name → float64 value, read when asked for."""
    return {c: LazyComponent(values, c, list(m.state_dict())) for c, m in pipeline_models(pristine).items()}


def digests(pipe: Any) -> dict[str, Digest]:
    """``component.name`` → digest of every base tensor (PEFT's own left out)."""
    return digests_of({f"{c}.{name}": t for c, m in pipeline_models(pipe).items() for name, t in live_weights(m).items()})


def changed_tensors(pipe: Any, before: Mapping[str, Digest]) -> list[str]:
    """The base tensors of ``pipe`` that are no longer what ``before`` recorded (or are gone)."""
    now = {f"{c}.{name}": t for c, m in pipeline_models(pipe).items() for name, t in live_weights(m).items()}
    after = digests_of({key: now[key] for key in before if key in now})
    return [key for key, d in before.items() if after.get(key) != d]
