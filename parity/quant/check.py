"""The check on a quantized base (``lora-parity check --quantization NAME``): the user's LoRA files on a
denoiser quantized as users quantize it, measured against our reference built from the dequantized base
weights in float64 (parity/quant/dequant.py), never from PEFT's code.

In order, on one pipeline:
  1. load the files (diffusers + PEFT, as a user does);
  2. unfused, per targeted Linear: the quantized base forward against x @ W_qᵀ (our dequantization is
     what the layer computes), and the LoRA's contribution layer(x) − base_layer(x) against x @ δᵀ;
  3. unfused, the denoiser output against a float64 forward of the reference weights W_q + δ (weight-only
     quantizers; one that quantizes activations is checked per layer only);
  4. ``fuse_lora``: each fused weight, dequantized, against W_q + δ within half a requantization step
     (bitsandbytes, torchao requantize), or what diffusers did instead: raised (GGUF, fp8 casting), or
     merged nothing and said it merged (quanto);
  5. ``unfuse_lora``, over ``cycles``: the drift from W_q in quantization steps.
Bounds: parity/tolerances.py QUANT_TOLERANCES. Findings: parity/quant/findings.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from parity.checks.check import CheckRequest, FileReport, file_report, plan_check, with_published
from parity.checks.fuse import fuse_components, load_files, targeted_parameters
from parity.checks.progress import SILENT, Progress
from parity.devices import resolve, strict_float32
from parity.errors import LoaderRefused, ParityInputError
from parity.lora.reader import read_lora
from parity.quant.apply import quantize_denoisers
from parity.quant.dequant import Dequantized, dequantize, requant_step
from parity.quant.findings import findings_shown, known_line, refusal_shown
from parity.quant.registry import Quantizer, quantizer_versions, require
from parity.reference.merge import reference_merge
from parity.tolerances import (
    QUANT_TOLERANCES,
    dtype_from_name,
    merge_bound,
    output_budget,
    tolerance,
    unfuse_bound,
    unit_roundoff,
)
from parity.versions import library_versions
from parity.zoo import build_pipeline, get_family
from parity.zoo.source import describe as describe_source

ROWS = 4  # inputs per per-layer forward


@dataclass(frozen=True)
class QuantRequest:
    family: str
    loras: tuple[str, ...]
    quantization: str
    dtype: str = "float32"
    lora_scale: float = 1.0
    weights: tuple[float, ...] | None = None
    cycles: int = 1
    device: str = "cpu"
    model_path: str | None = None
    allow_pickle: bool = False
    gguf: str | None = None  # quantization "gguf": the user's GGUF denoiser file


@dataclass(frozen=True)
class Measure:
    """The worst element of one measurement over every layer: its ratio to its bound, and where."""

    ratio: float = 0.0  # max |error| / bound; <= 1 passes
    steps: float = 0.0  # max |error| in quantization steps, where the measurement has them
    where: str = ""
    layers: int = 0

    @property
    def ok(self) -> bool:
        return self.ratio <= 1.0


@dataclass(frozen=True)
class QuantReport:
    family: str
    quantization: str
    how: str
    model: str
    device: str
    dtype: str
    lora_scale: float
    versions: dict[str, str]
    files: list[FileReport]
    stored: dict[str, int]  # quantized weight type → how many targeted weights have it
    base_forward: Measure
    base_forward_float16: float | None  # where the base forward failed: its ratio with W_q rounded to float16
    contribution: Measure
    output: dict[str, Any]  # {"error", "budget"} or {"skipped": why}
    fuse: str  # "requantized", "merged in place", "raised: …", "merged nothing"
    fused: Measure
    unfuse: list[Measure]  # per cycle, drift in steps of W_q
    failures: list[str]
    known: list[str] = field(default_factory=list)
    ok: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ok", not self.failures)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _worst(measures: Sequence[tuple[float, float, str]]) -> Measure:
    if not measures:
        return Measure()
    ratio, steps, where = max(measures, key=lambda m: (m[0], m[1]))
    return Measure(ratio, max(m[1] for m in measures), where, len(measures))


def _ratio(error: torch.Tensor, bound: torch.Tensor) -> float:
    """max |error| / bound; an error where the bound is 0 is infinitely over."""
    over = error.abs() / bound.clamp_min(torch.finfo(torch.float64).tiny)
    return float(over.max()) if over.numel() else 0.0


def _in_steps(error: torch.Tensor, step: torch.Tensor | None) -> float:
    """max |error| in steps of its row's coarsest grid point (for int8 every step of a row is one; a
    float8 grid is fine near 0, where a step says little)."""
    if step is None or not error.numel():
        return 0.0
    rows = step.expand_as(error).reshape(error.shape[0], -1).amax(1).reshape(-1, *([1] * (error.dim() - 1)))
    return float((error.abs() / rows.clamp_min(torch.finfo(torch.float64).tiny)).max())


def requant_arithmetic(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A requantization's own arithmetic, in the weight's dtype (torchao keeps its scale in it; bitsandbytes
    computes in float32, which this bounds too): x / scale and q · scale each round once, so the grid point
    chosen and its value are off by at most 2·u_d·|x| beyond the half step. In bfloat16 that is about one
    int8 step at the row's absmax (2 · 2^-8 · 127.5)."""
    return 2 * unit_roundoff(dtype) * values.abs()


def _stored(param: torch.Tensor) -> tuple[torch.Tensor, Dequantized | None]:
    deq = dequantize(param)
    return (param.detach().double() if deq is None else deq.weight), deq


def _layer(components: dict[str, nn.Module], component: str, module: str) -> nn.Module:
    return components[component].get_submodule(module)


def base_forward_check(layer: nn.Module, weight: torch.Tensor, quantizer: Quantizer, dtype: torch.dtype,
                       x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(ratio to the base-forward bound, base output) of ``layer``'s quantized base on ``x`` against
    x @ weightᵀ + b in float64, ``weight`` being our dequantization."""
    base = _inner(layer)
    with torch.no_grad():
        out = base(x).double().cpu()
    xd = x.double().cpu()
    bias = base.bias.detach().double().cpu() if getattr(base, "bias", None) is not None else None
    exact = xd @ weight.T + (bias if bias is not None else 0.0)
    n = weight.shape[1]
    u = unit_roundoff(dtype)
    if quantizer.activations:  # int8 activations through a float16 path (LLM.int8) round at least that
        u = max(u, unit_roundoff(torch.float16))
    magnitude = xd.abs() @ weight.abs().T + (bias.abs() if bias is not None else 0.0)
    bound = QUANT_TOLERANCES["base-forward"].roundings * (n + 2) * u * magnitude
    if quantizer.activations == "int8":  # per-row absmax/127 grid: half a step per input
        bound = bound + 0.5 * (xd.abs().amax(1, keepdim=True) / 127.0) * weight.abs().sum(1)
    elif quantizer.activations == "float8":  # e4m3: half of 2^-3 relative, or of its subnormal spacing
        scale = xd.abs().amax(1, keepdim=True) / 448.0
        bound = bound + 2.0**-4 * magnitude + 0.5 * scale * 2.0**-9 * weight.abs().sum(1)
    return _ratio(out - exact, bound), out


def contribution_check(layer: nn.Module, base_out: torch.Tensor, delta: torch.Tensor, abs_product: torch.Tensor,
                       rank: int, dtype: torch.dtype, x: torch.Tensor) -> float:
    """Ratio to its bound of the LoRA's contribution layer(x) − base_layer(x) against x @ δᵀ."""
    with torch.no_grad():
        out = layer(x).double().cpu()
    xd = x.double().cpu()
    u = unit_roundoff(dtype)
    n = delta.shape[1]
    bound = QUANT_TOLERANCES["contribution"].roundings * (
        (n + rank + 2) * u * (xd.abs() @ abs_product.T) + 2 * u * out.abs())
    return _ratio((out - base_out) - xd @ delta.T, bound)


def _inputs(n: int, dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(ROWS, n, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


@dataclass
class _Base:
    """Per targeted parameter, before loading: the float64 weight the reference starts from, its
    dequantization (None when the parameter is not quantized), and whether it is a Linear's weight."""

    weights: dict[str, dict[str, torch.Tensor]]
    deq: dict[tuple[str, str], Dequantized | None]


def base_weights(components: dict[str, nn.Module], targeted: set[tuple[str, str]]) -> _Base:
    weights: dict[str, dict[str, torch.Tensor]] = {}
    deq: dict[tuple[str, str], Dequantized | None] = {}
    for component, name in targeted:
        param = components[component].get_parameter(name)
        weights.setdefault(component, {})[name], deq[(component, name)] = _stored(param)
    return _Base(weights, deq)


def unfused_layers(components: dict[str, nn.Module], base: _Base, loras: Sequence[Any], weights: Sequence[float],
                    quantizer: Quantizer, dtype: torch.dtype, device: str
                    ) -> tuple[Measure, Measure, list[str], float | None]:
    """Per targeted Linear: the quantized base forward and the LoRA's contribution (step 2); and where
    the base forward fails, its worst ratio against W_q rounded to float16 (the diagnosis of
    GGUF_DEQUANT_FLOAT16, parity/quant/findings.py)."""
    refs = reference_merge(base.weights, list(zip(loras, weights)), 1.0)
    base_ratios, contributions, failures, as_float16 = [], [], [], []
    for i, key in enumerate(sorted(refs)):
        component, param = refs.parameter(key)
        if not param.endswith(".weight"):
            continue
        layer = _layer(components, component, param.removesuffix(".weight"))
        inner = _inner(layer)
        if not isinstance(inner, nn.Linear):  # convolutions are checked by the fuse only
            continue
        ref = refs[key]
        x = _inputs(ref.base.shape[1], dtype, device, seed=i)
        name = refs.name(key)
        try:
            ratio, base_out = base_forward_check(layer, ref.base, quantizer, dtype, x)
            if ratio > 1:
                as_float16.append(base_forward_check(layer, ref.base.half().double(), quantizer, dtype, x)[0])
        except Exception as exc:  # noqa: BLE001 - what the quantized layer raises is the measurement
            failures.append(f"unfused base forward of {name} raised {type(exc).__name__}: {_first_line(exc)}")
            base_ratios.append((math.inf, 0.0, name))
            break
        base_ratios.append((ratio, 0.0, name))
        try:
            abs_product = sum(s.abs_product for s in ref.steps)
            rank = max(s.rank for s in ref.steps)
            contribution = contribution_check(layer, base_out, ref.merged - ref.base, abs_product, rank, dtype, x)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"unfused forward of {name} with its LoRA raised {type(exc).__name__}: {_first_line(exc)}")
            contributions.append((math.inf, 0.0, name))
            break
        contributions.append((contribution, 0.0, name))
    return _worst(base_ratios), _worst(contributions), failures, max(as_float16) if as_float16 else None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:240]


def _reference_output(family: Any, pipe: Any, floats: dict[str, nn.Module], components: dict[str, nn.Module],
                      refs: Any, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """(float64 output, e_fwd): each float denoiser with every quantized weight replaced by our
    dequantization and every targeted one by the reference W_q + δ, run in float64 and in ``dtype``."""
    outs64, outs = [], []
    merged = {}
    for key in refs:
        component, param = refs.parameter(key)
        merged[(component, param)] = refs[key].merged
    for name, model in floats.items():
        quantized = components[name]
        with torch.no_grad():
            for pname, param in model.named_parameters():
                owner, leaf = pname.rsplit(".", 1) if "." in pname else ("", pname)
                now = getattr(_inner(quantized.get_submodule(owner)), leaf)
                value, _ = _stored(now)
                param.data = merged.get((name, pname), value).to(param.device)
            model.to(torch.float64)
            inputs = family.denoiser_inputs(pipe, 0, torch.float64)
            outs64.append(family.denoiser_tensor(model(**inputs, return_dict=False)[0]).double().cpu())
            model.to(dtype)
            inputs = family.denoiser_inputs(pipe, 0, dtype)
            outs.append(family.denoiser_tensor(model(**inputs, return_dict=False)[0]).double().cpu())
    out64 = torch.cat([o.reshape(-1) for o in outs64])
    return out64, float((torch.cat([o.reshape(-1) for o in outs]) - out64).abs().max())


def _inner(layer: nn.Module) -> nn.Module:
    """A PEFT layer's base layer; any other module itself."""
    return layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer


def _output(family: Any, pipe: Any, floats: dict[str, nn.Module], components: dict[str, nn.Module], base: _Base,
            loras: Sequence[Any], weights: Sequence[float], quantizer: Quantizer, dtype: torch.dtype) -> dict[str, Any]:
    """Step 3: the unfused quantized denoiser output against the reference's float64 forward."""
    if quantizer.activations:
        return {"skipped": f"{quantizer.name} quantizes activations: checked per layer (base forward bound)"}
    need = sum(p.numel() for m in floats.values() for p in m.parameters()) * 8  # the float denoiser in float64
    if torch.device(next(iter(floats.values())).device).type == "cpu":
        import psutil

        have = psutil.virtual_memory().available
        if need > have:
            return {"skipped": f"the float64 reference forward needs {need / 2**30:.1f} GiB, {have / 2**30:.1f} GiB "
                               "available: checked per layer only"}
    try:
        with torch.no_grad():
            outs = [family.denoiser_step(pipe, name, 0, dtype).double().cpu() for name in family.denoisers(pipe)]
    except Exception as exc:  # noqa: BLE001 - measured, and reported as the failure it is
        return {"raised": f"{type(exc).__name__}: {_first_line(exc)}"}
    out = torch.cat([o.reshape(-1) for o in outs])
    refs = reference_merge(base.weights, list(zip(loras, weights)), 1.0)
    out64, e_fwd = _reference_output(family, pipe, floats, components, refs, dtype)
    budget = output_budget(e_fwd, out64, dtype, "unfused", weight_roundings=2)
    return {"error": float((out - out64).abs().max()), "budget": budget, "forward_error": e_fwd}


def fused_weights(components: dict[str, nn.Module], base: _Base, loras: Sequence[Any], weights: Sequence[float],
           scale: float, dtype: torch.dtype, device: str) -> tuple[Measure, list[str], bool]:
    """Step 4, after a fuse that returned: (worst fused weight, failures, whether anything was merged)."""
    refs = reference_merge(base.weights, list(zip(loras, weights)), scale)
    tol = tolerance("merge", device, dtype)
    measures, unchanged, failures = [], [], []
    for key in refs:
        component, param = refs.parameter(key)
        module = param.rsplit(".", 1)[0]
        layer = _layer(components, component, module)
        now, _ = _stored(getattr(_inner(layer), param.rsplit(".", 1)[1]))
        ref = refs[key]
        bound = merge_bound(ref.steps, ref.base, dtype, tol)
        was = base.deq.get((component, param))
        step = requant_step(ref.merged, was) if was is not None else None
        if step is not None:
            bound = bound + QUANT_TOLERANCES["requantize"].steps * step + requant_arithmetic(ref.merged, dtype)
        error = now - ref.merged
        if torch.equal(now, ref.base):
            unchanged.append(refs.name(key))
        measures.append((_ratio(error, bound), _in_steps(error, step), refs.name(key)))
    worst = _worst(measures)
    if unchanged and len(unchanged) == len(measures):
        failures.append(f"fuse_lora returned but merged nothing: all {len(unchanged)} targeted weights are "
                        f"unchanged, e.g. {unchanged[0]}")
    elif not worst.ok:
        failures.append(f"fused: {worst.where} is {worst.ratio:.3g}x its bound ({worst.steps:.3g} steps from "
                        "W_q + δ)")
    return worst, failures, len(unchanged) < len(measures)


def drift_from_base(components: dict[str, nn.Module], base: _Base, loras: Sequence[Any], weights: Sequence[float],
           scale: float, cycle: int, dtype: torch.dtype, device: str) -> Measure:
    """Step 5: every targeted weight after ``cycle`` fuse/unfuse cycles against W_q, in steps of W_q."""
    refs = reference_merge(base.weights, list(zip(loras, weights)), scale)
    tol = tolerance("merge", device, dtype)
    measures = []
    for key in refs:
        component, param = refs.parameter(key)
        layer = _layer(components, component, param.rsplit(".", 1)[0])
        now, _ = _stored(getattr(_inner(layer), param.rsplit(".", 1)[1]))
        ref = refs[key]
        was = base.deq.get((component, param))
        arithmetic = merge_bound(ref.steps, ref.base, dtype, tol)
        t = QUANT_TOLERANCES["unfuse-requantize"]
        step0 = was.step if was is not None else None
        fused_step = requant_step(ref.merged, was) if was is not None else None
        if fused_step is not None and step0 is not None:
            # the unfuse requantizes W_q + (the fuse's error): its grid is the one at |W_q| + ½·fused step
            unfused_step = requant_step(ref.base.abs() + 0.5 * fused_step, was)
            bound = cycle * (t.steps * 0.5 * (fused_step + unfused_step) + t.roundings * (
                arithmetic + requant_arithmetic(ref.merged, dtype) + requant_arithmetic(ref.base, dtype)))
        else:  # a weight the quantizer left in floating point: the float unfuse table's bound
            bound = unfuse_bound(ref.steps, ref.base, dtype, tolerance("unfuse", device, dtype), cycle)
        error = now - ref.base
        measures.append((_ratio(error, bound), _in_steps(error, step0), refs.name(key)))
    return _worst(measures)


def _published(request: QuantRequest, tiny: dict[str, nn.Module], progress: Progress
               ) -> tuple[QuantRequest, str | None]:
    """The published architecture the files are checked against where they are wider than the tiny model
    (the check's own route, parity/zoo/route.py: built once into the cache, reduced to the blocks the
    files target where all of it would not fit), as the request to run; else the request as given."""
    plan = plan_check(CheckRequest(request.family, request.loras, (request.dtype,), request.lora_scale,
                                   device=request.device, allow_pickle=request.allow_pickle))
    routed, published = with_published(plan, tiny, progress)
    if published is None:
        return request, None
    return replace(request, model_path=routed.request.model_path, loras=routed.request.loras), published


def run_quant_check(request: QuantRequest, progress: Progress = SILENT) -> QuantReport:
    family = get_family(request.family)
    device = resolve(request.device)
    quantizer = require(request.quantization, device)
    dtype = dtype_from_name(request.dtype)
    weights = [1.0] * len(request.loras) if request.weights is None else list(request.weights)
    if len(weights) != len(request.loras):
        raise ParityInputError(f"--weights has {len(weights)} value(s) for {len(request.loras)} --lora file(s)")
    strict_float32(device)
    if (quantizer.name == "gguf") != (request.gguf is not None):
        raise ParityInputError("--quantization gguf reads the user's GGUF denoiser given as --model-path (a .gguf "
                               "file; --model-config: the folder of the rest), and a .gguf --model-path needs it")
    # Every input error surfaces here, before the first step: model, files, the quantizer's load.
    pipe = build_pipeline(family, dtype=dtype, device=device, model_path=request.model_path)
    users, published = request.loras, None
    if request.model_path is None and request.gguf is None:  # files wider than the tiny model: published
        request, published = _published(request, family.components(pipe), progress)
        if published is not None:
            pipe = build_pipeline(family, dtype=dtype, device=device, model_path=request.model_path)
    components = family.components(pipe)
    loras = [read_lora(p, components, strict=True, allow_pickle=request.allow_pickle) for p in request.loras]
    floats = quantize_denoisers(pipe, family, quantizer, dtype, device, request.gguf, request.model_path)
    components = family.components(pipe)
    targeted = targeted_parameters(loras)
    base = base_weights(components, targeted)
    progress.plan(3)
    stored: dict[str, int] = {}
    for deq in base.deq.values():
        kind = deq.kind if deq is not None else "not quantized"
        stored[kind] = stored.get(kind, 0) + 1
    failures: list[str] = []
    with progress.step("load the LoRA files") as outcome:
        try:
            loaded = load_files(pipe, family, loras, weights, snapshot_base=False)
        except LoaderRefused as exc:
            known = refusal_shown(quantizer, exc.reason)
            if known is not None:
                exc.known = known_line(known)
            raise
        outcome(True)
    given = dict(zip(request.loras, users))  # a renumbered copy (the published route) → the file given
    files = [replace(f, path=given.get(f.path, f.path)) for f in
             (file_report(lora, where) for lora, where in zip(loras, loaded.placed))]
    with progress.step("unfused: each layer's base forward and LoRA contribution; the denoiser output") as outcome:
        base_forward, contribution, raised, float16 = unfused_layers(components, base, loras, weights, quantizer, dtype, device)
        failures += raised
        if not base_forward.ok and math.isfinite(base_forward.ratio):
            failures.append(f"base forward: {base_forward.where} is {base_forward.ratio:.3g}x its bound against "
                            "x @ W_qᵀ (our dequantization is not what the layer computes)")
        if not contribution.ok and math.isfinite(contribution.ratio):
            failures.append(f"unfused LoRA contribution: {contribution.where} is {contribution.ratio:.3g}x its "
                            "bound against x @ δᵀ")
        output = _output(family, pipe, floats, components, base, loras, weights, quantizer, dtype) \
            if not raised else {"skipped": "a layer's forward raised"}
        del floats
        if "raised" in output:
            failures.append(f"unfused denoiser forward raised {output['raised']}")
        elif "error" in output and output["error"] > output["budget"]:
            failures.append(f"unfused denoiser output is {output['error']:.3g} from the reference's float64 "
                            f"forward (budget {output['budget']:.3g})")
        outcome(not failures)
    fused, drift, fuse = Measure(), [], "not run"
    with progress.step(f"fuse_lora at scale {request.lora_scale:g}, then {request.cycles} fuse/unfuse cycle(s)") \
            as outcome:
        names = fuse_components(pipe, components)
        try:
            pipe.fuse_lora(components=names, lora_scale=request.lora_scale)
        except Exception as exc:  # noqa: BLE001 - diffusers' refusal is the measurement
            fuse = f"raised {type(exc).__name__}: {_first_line(exc)}"
            failures.append(f"fuse_lora {fuse}")
        else:
            fused, fuse_failures, merged = fused_weights(components, base, loras, weights, request.lora_scale, dtype, device)
            failures += fuse_failures
            fuse = "merged nothing" if not merged else (
                "requantized" if any(d is not None for d in base.deq.values()) else "merged")
            for cycle in range(1, request.cycles + 1):
                if cycle > 1:
                    pipe.fuse_lora(components=names, lora_scale=request.lora_scale)
                pipe.unfuse_lora(components=names)
                drift.append(drift_from_base(components, base, loras, weights, request.lora_scale, cycle, dtype, device))
            if drift and not drift[-1].ok:
                failures.append(f"unfuse: {drift[-1].where} drifted {drift[-1].steps:.3g} steps from W_q after "
                                f"{len(drift)} cycle(s), {drift[-1].ratio:.3g}x its bound")
        outcome(not failures)
    model = published or describe_source(request.gguf or request.model_path, family) or "tiny (built-in, seed 0)"
    report = QuantReport(family.name, quantizer.name, quantizer.how, model, device, request.dtype, request.lora_scale,
                         {**library_versions(), **quantizer_versions()}, files, stored, base_forward, float16,
                         contribution,
                         output, fuse, fused, drift, failures)
    report.known.extend(findings_shown(quantizer, report))
    return report


__all__ = ["LoaderRefused", "QuantReport", "QuantRequest", "run_quant_check"]
