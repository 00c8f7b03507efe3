"""Hotswapping LoRAs into a compiled model through diffusers, and what a swap must be compared with.

The recipe diffusers documents: ``enable_lora_hotswap(target_rank=…)`` before the first load,
compile after it, then ``load_lora_weights(…, hotswap=True, adapter_name=<same>)``. Two levels:
``model`` drives the denoiser's own API (``load_lora_adapter`` with the component prefix) and one
denoiser step; ``pipeline`` drives the pipeline's API and a full (tiny) image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from parity.compare import output_budget
from parity.dynamo import CompileWatch, compile_in_place, reset, watch_compiles
from parity.formats import read_lora
from parity.merge import reference_merge
from parity.modules import base_weights, lora_capable_modules
from parity.zoo import build_pipeline, get_family
from parity.zoo.family import Family

ADAPTER = "hot"
LEVELS = ("model", "pipeline")


@dataclass
class HotswapSession:
    family: Family
    pipe: Any
    level: str
    dtype: torch.dtype
    device: str
    target_rank: int
    backend: str
    mode: str | None
    seed: int = 0
    compile_seconds: float = 0.0  # first load + compile + first call

    @property
    def denoiser(self) -> torch.nn.Module:
        return getattr(self.pipe, self.family.denoiser)


def _load(pipe: Any, family: Family, level: str, path: str, hotswap: bool) -> None:
    if level == "model":
        # use_safetensors=True: without it load_lora_adapter drops the file's lora_adapter_metadata
        # header and with it the alpha (tests/test_findings.py pins this).
        getattr(pipe, family.denoiser).load_lora_adapter(
            path, prefix=family.denoiser, adapter_name=ADAPTER, hotswap=hotswap, use_safetensors=True
        )
    else:
        pipe.load_lora_weights(path, adapter_name=ADAPTER, hotswap=hotswap)


def run(family: Family, pipe: Any, level: str, seed: int = 0) -> torch.Tensor:
    """One denoiser step (model level) or one tiny image (pipeline level), as a CPU tensor."""
    with torch.no_grad():
        if level == "model":
            denoiser = getattr(pipe, family.denoiser)
            out = denoiser(**family.denoiser_inputs(pipe, seed, denoiser.dtype), return_dict=False)[0]
            return out.detach().cpu()
        images = pipe(**family.call_args(pipe, seed)).images
    return torch.from_numpy(np.asarray(images))


def prepare_for_hotswap(pipe: Any, family: Family, level: str, target_rank: int) -> None:
    if level == "model":
        getattr(pipe, family.denoiser).enable_lora_hotswap(target_rank=target_rank)
    else:
        pipe.enable_lora_hotswap(target_rank=target_rank)


def start(
    family: Family | str,
    first_lora: str,
    target_rank: int,
    level: str = "model",
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    backend: str = "eager",
    mode: str | None = None,
    model_path: str | None = None,
) -> HotswapSession:
    """A pipeline prepared for hotswap, ``first_lora`` loaded, the denoiser compiled and warmed up."""
    fam = get_family(family) if isinstance(family, str) else family
    reset()
    pipe = build_pipeline(fam, dtype=dtype, device=device, model_path=model_path)
    session = HotswapSession(fam, pipe, level, dtype, device, target_rank, backend, mode)
    t0 = time.perf_counter()
    prepare_for_hotswap(pipe, fam, level, target_rank)
    _load(pipe, fam, level, first_lora, hotswap=False)
    compile_in_place(session.denoiser, backend, mode)
    run(fam, pipe, level, session.seed)
    if mode == "reduce-overhead":
        run(fam, pipe, level, session.seed)  # CUDA graphs are recorded on the second call, not the first
    session.compile_seconds = time.perf_counter() - t0
    return session


@dataclass
class SwapResult:
    watch: CompileWatch
    swap_seconds: float
    call_seconds: float
    output: torch.Tensor | None
    error: Exception | None = None


def swap(session: HotswapSession, path: str) -> SwapResult:
    """Hotswap ``path`` in and call once, under the recompile guard."""
    output, error = None, None
    swap_seconds = call_seconds = 0.0
    with watch_compiles() as watch:
        try:
            t0 = time.perf_counter()
            _load(session.pipe, session.family, session.level, path, hotswap=True)
            swap_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            output = run(session.family, session.pipe, session.level, session.seed)
            call_seconds = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 — a refused swap is a result the checks inspect
            from torch._dynamo.exc import RecompileError

            if isinstance(exc, RecompileError):
                raise
            error = exc
    return SwapResult(watch, swap_seconds, call_seconds, output, error)


def fresh_output(
    family: Family,
    path: str,
    level: str,
    dtype: torch.dtype,
    device: str = "cpu",
    target_rank: int | None = None,
    model_path: str | None = None,
) -> torch.Tensor:
    """An eager pipeline freshly loaded with only ``path`` (prepared for hotswap if ``target_rank``)."""
    pipe = build_pipeline(family, dtype=dtype, device=device, model_path=model_path)
    if target_rank is not None:
        prepare_for_hotswap(pipe, family, level, target_rank)
    _load(pipe, family, level, path, hotswap=False)
    return run(family, pipe, level)


def merged_output(
    family: Family,
    path: str,
    level: str,
    dtype: torch.dtype,
    device: str = "cpu",
    model_path: str | None = None,
    nudge: bool = False,
) -> torch.Tensor:
    """The base pipeline with our reference merge of ``path`` written into its weights (no PEFT).

    With ``dtype`` float64 this is the ground truth every other output is measured against. With
    ``nudge`` every denoiser weight (W' included) is then moved by one ULP: the merged network's own
    rounding-noise floor.
    """
    pipe = build_pipeline(family, dtype=torch.float32, device=device, model_path=model_path)
    components = family.components(pipe)
    lora = read_lora(path, components)
    before = {c: base_weights(m) for c, m in components.items()}
    refs = reference_merge(before, [(lora, 1.0)])
    pipe.to(dtype=dtype)
    with torch.no_grad():
        for (component, module), ref in refs.items():
            weight = lora_capable_modules(components[component])[module].weight
            weight.copy_(ref.merged.to(dtype))
    if nudge:
        nudge_weights(getattr(pipe, family.denoiser))
    return run(family, pipe, level)


def nudge_weights(model: torch.nn.Module) -> None:
    """Move every parameter by one ULP of its dtype, signs seeded by name: the dtype's resolution."""
    from parity.compare import ulp
    from parity.zoo.weights import deterministic_tensor

    with torch.no_grad():
        for name, p in model.named_parameters():
            sign = torch.sign(deterministic_tensor(0, f"nudge/{name}", tuple(p.shape))).to(p.device)
            p.copy_((p.double() + sign * ulp(p, p.dtype).to(p.device)).to(p.dtype))


def nudged_output(
    family: Family, path: str, level: str, dtype: torch.dtype, target_rank: int, device: str = "cpu"
) -> torch.Tensor:
    """A fresh prepared load whose base denoiser weights are each moved by one ULP."""
    pipe = build_pipeline(family, dtype=dtype, device=device)
    nudge_weights(getattr(pipe, family.denoiser))
    prepare_for_hotswap(pipe, family, level, target_rank)
    _load(pipe, family, level, path, hotswap=False)
    return run(family, pipe, level)


def parameter_footprint(model: torch.nn.Module) -> tuple[int, int]:
    """(number of parameters, bytes): hotswap must not grow either."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)


@dataclass
class SwapOutputReport:
    """A swapped model's output against a fresh load and, at model level, the float64 truth."""

    vs_prepared: float  # max |compiled − fresh eager prepared the same way|
    prepared_budget: float  # 0 for the eager backend: same arithmetic
    errors: dict[str, float]  # max |x − truth| for compiled / fresh / merged (model level only)
    budgets: dict[str, float]  # the same keys: each one's budget

    @property
    def ok(self) -> bool:
        return self.vs_prepared <= self.prepared_budget and all(
            e <= self.budgets[name] for name, e in self.errors.items()
        )

    @property
    def worst_ratio(self) -> float:
        return max((e / self.budgets[n] for n, e in self.errors.items() if self.budgets[n] > 0), default=0.0)

    def failures(self) -> list[str]:
        out = []
        if self.vs_prepared > self.prepared_budget:
            out.append(f"differs from a fresh eager load by {self.vs_prepared:.3g} (budget {self.prepared_budget:.3g})")
        out += [
            f"{name} is {err:.3g} from the float64 truth (budget {self.budgets[name]:.3g})"
            for name, err in self.errors.items()
            if err > self.budgets[name]
        ]
        return out


def check_swap_output(session: HotswapSession, path: str, output: torch.Tensor) -> SwapOutputReport:
    """Compare a swapped output with fresh eager loads of ``path`` and our reference merge of it.

    Model level, eager backend: bit-identical to a fresh model prepared the same way. Otherwise
    within the "rounding-noise" budget: what moving every weight by one ULP does to the output.
    At model level also: compiled, fresh (unprepared) and reference-merged outputs each within the
    "rounding-noise" budget of the float64 truth (our merge in float64).
    """
    fam, level, dtype, device = session.family, session.level, session.dtype, session.device
    prepared = fresh_output(fam, path, level, dtype, device, target_rank=session.target_rank)
    nudged = nudged_output(fam, path, level, dtype, session.target_rank, device)
    noise_budget = output_budget(nudged, prepared, dtype, "rounding-noise")
    vs_prepared = float((output.double() - prepared.double()).abs().max())
    exact = session.backend == "eager" and level == "model"
    prepared_budget = output_budget(prepared, prepared, dtype, "same-arithmetic") if exact else noise_budget
    errors: dict[str, float] = {}
    budgets: dict[str, float] = {}
    if level == "model":
        truth = merged_output(fam, path, level, torch.float64, device).double()
        fresh = fresh_output(fam, path, level, dtype, device)
        merged = merged_output(fam, path, level, dtype, device)
        merged_nudged = merged_output(fam, path, level, dtype, device, nudge=True)
        for name, x in (("compiled", output), ("fresh", fresh), ("merged", merged)):
            errors[name] = float((x.double() - truth).abs().max())
            budgets[name] = noise_budget
        # The merged network rounds at ulp(W'), not ulp(W): its own noise floor, measured on it.
        budgets["merged"] = output_budget(merged_nudged, merged, dtype, "rounding-noise")
    return SwapOutputReport(vs_prepared, prepared_budget, errors, budgets)
