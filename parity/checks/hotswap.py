"""Hotswapping LoRAs into a compiled model through diffusers, and what a swap must be compared with.

The recipe diffusers documents: ``enable_lora_hotswap(target_rank=…)`` before the first load,
compile after it, then ``load_lora_weights(…, hotswap=True, adapter_name=<same>)``. Two levels:
``model`` drives the denoiser's own API (``load_lora_adapter`` with the component prefix; a file in
another layout is handed over as our parse of it written in diffusers') and one denoiser step;
``pipeline`` drives the pipeline's API and a full (tiny) image. A swap's fresh loads and float64 runs
are copies of the session's pipeline sharing its weights (parity/checks/fresh_copies.py), so the
check holds one copy of the model.

A pipeline of several denoisers (Wan 2.2 A14B's two experts) is swapped in the experts a session
names (parity/zoo/experts.py): ``high`` is ``transformer``, ``low`` is ``transformer_2``, ``both`` each.
Every expert the files go into is compiled and swapped. At model level each expert's
``load_lora_adapter`` takes the file's ``transformer.`` keys (the prefix the file was written with,
as ``load_lora_weights`` passes the state dict to ``transformer_2``) and each expert runs one step on
the same inputs, their outputs stacked; at pipeline level ``load_lora_weights`` is called once per
expert with the kwargs that put the file there (``load_into_transformer_2=True``); the tiny video's
three steps run both experts (parity/zoo/wan.py: pipeline_call_args).

A quantized base (``quantization``, a parity/quant/registry.py name) is the session's denoiser(s)
quantized as users quantize them (``build_pipeline(quantization=…)``); the fresh load a swap is
compared with is a copy of that same quantized pipeline. The float64 runs need floating modules, so
they run on the session's float twin (the same model built unquantized: its module tree and its
unquantized tensors) with every quantized weight replaced by our float64 dequantization of it
(parity/quant/dequant.py): PEFT's LoRA forward on W_q against our merge of W_q + δ. Files are read
against the twin too, whose weights have their logical shapes (a GGUF weight's are its packed bytes).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from parity.checks import fresh_copies as fc
from parity.checks.dynamo import CompileWatch, compile_in_place, reset, watch_compiles
from parity.checks.fuse import Digest, digests_of
from parity.lora.layouts import METADATA_KEY, to_state_dict
from parity.lora.neutral import LoraFile
from parity.lora.reader import read_lora
from parity.lora.tensors import diffusers_source
from parity.modules import live_weights, pipeline_models
from parity.reference.merge import reference_merge
from parity.tolerances import output_budget
from parity.zoo import build_pipeline, get_family
from parity.zoo.experts import FILE_COMPONENT, components_of, load_kwargs, place
from parity.zoo.family import Family

ADAPTER = "hot"
LEVELS = ("model", "pipeline")
# A LoRA to swap: a file's path, or a file our reader parsed (a pickle read weights-only goes to
# diffusers as its tensors, so nothing downstream unpickles it).
Source = str | LoraFile


def _for_diffusers(source: Source) -> Any:
    return diffusers_source(source) if isinstance(source, LoraFile) else source


def denoiser_part(lora: LoraFile, denoiser: str) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The ``denoiser`` modules of a parsed file in the diffusers layout, keys still prefixed with
    ``<denoiser>.``, and the LoraConfig kwargs diffusers reads from the header (ranks and alphas).

    The denoiser's own ``load_lora_adapter`` converts no layout (only the pipeline's
    ``load_lora_weights`` converts kohya and the others), so a kohya file handed to it as is loads no
    adapter. Writing our parse in the one layout it reads makes every layout the reader takes
    hotswappable at model level; the conversion is ours, not lora_conversion_utils', so it stays
    independent of the code under test.
    """
    part = replace(lora, modules={k: m for k, m in lora.modules.items() if k[0] == denoiser})
    tensors, header = to_state_dict(part, "diffusers")
    return tensors, None if not header or METADATA_KEY not in header else json.loads(header[METADATA_KEY])


def expert_components(family: Family, expert: str | None) -> tuple[str, ...]:
    """The denoisers a session's files go into: its expert's (parity/zoo/experts.py), or the family's one."""
    return (family.denoiser,) if expert is None else components_of(family, expert)


def file_prefix(family: Family) -> str:
    """The component a file's keys name whichever expert it goes into (``transformer.`` for Wan)."""
    return FILE_COMPONENT if family.experts else family.denoiser


def _load_adapter(denoiser: torch.nn.Module, prefix: str, source: Source, hotswap: bool) -> None:
    if isinstance(source, LoraFile) and source.layout != "diffusers":
        tensors, metadata = denoiser_part(source, prefix)
        # metadata as diffusers parses it from a header: without it the alpha would default to the rank.
        denoiser.load_lora_adapter(tensors, prefix=prefix, adapter_name=ADAPTER, hotswap=hotswap, metadata=metadata)
        return
    # A diffusers-layout file goes as the user wrote it (path, or a pickle's tensors), header included.
    # use_safetensors=True: without it load_lora_adapter drops the file's lora_adapter_metadata
    # header and with it the alpha (tests/test_findings.py pins this).
    denoiser.load_lora_adapter(_for_diffusers(source), prefix=prefix, adapter_name=ADAPTER, hotswap=hotswap,
                               use_safetensors=True)


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
    model_path: str | None = None  # the user's model, so fresh loads and the truth use the same network
    seed: int = 0
    compile_seconds: float = 0.0  # first load + compile + first call
    # The pipeline before its first load, sharing its tensors: what fresh loads copy (fresh_copies.py).
    pristine: Any = None
    loaded: dict[str, Digest] = field(default_factory=dict)  # base tensor digests before the first load
    expert: str | None = None  # a family of several denoisers: the expert the files go into (experts.py)
    warmup_recompiles: list[str] = field(default_factory=list)  # the second call's, before any swap
    quantization: str | None = None  # the denoiser(s) quantized by this parity/quant/registry.py name
    # A quantized session's float twin: the same model built unquantized (files are read against it, the
    # float64 runs use its modules); built when first needed unless start() was handed one.
    twin: Any = None

    @property
    def reference_pristine(self) -> Any:
        """The pipeline the float64 runs copy, and files are read against: the pristine one, or for a
        quantized session its float twin."""
        if self.quantization is None:
            return self.pristine
        if self.twin is None:
            self.twin = build_pipeline(self.family, dtype=self.dtype, device=self.device, model_path=self.model_path)
        return self.twin

    @property
    def reading(self) -> dict[str, torch.nn.Module] | None:
        """The components a file path is parsed against (None: the pipeline loaded into)."""
        return None if self.quantization is None else self.family.components(self.reference_pristine)

    @property
    def components(self) -> tuple[str, ...]:
        """The denoisers the files are loaded into, compiled and swapped."""
        return expert_components(self.family, self.expert)

    @property
    def denoisers(self) -> list[torch.nn.Module]:
        return [getattr(self.pipe, c) for c in self.components]

    @property
    def denoiser(self) -> torch.nn.Module:
        """The first (for a one-denoiser family, the only) denoiser the files go into."""
        return self.denoisers[0]


def _load(pipe: Any, family: Family, level: str, source: Source, hotswap: bool, expert: str | None = None,
          reading: dict[str, torch.nn.Module] | None = None) -> None:
    if level == "model":
        if isinstance(source, str):
            # A path may hold any layout: parsed first, as the CLI does, so model level reads what
            # load_lora_weights would (the fresh loads that swaps are compared with come this way).
            # ``reading``: the float twin's components, for a quantized pipe (a GGUF weight's shape is
            # its packed bytes).
            source = read_lora(source, reading if reading is not None else family.components(pipe), strict=False)
        for component in expert_components(family, expert):
            _load_adapter(getattr(pipe, component), file_prefix(family), source, hotswap)
    else:
        for kwargs in load_kwargs(family, expert):
            pipe.load_lora_weights(_for_diffusers(source), adapter_name=ADAPTER, hotswap=hotswap, **kwargs)


def run(family: Family, pipe: Any, level: str, seed: int = 0, replay: Any = None,
        expert: str | None = None) -> torch.Tensor:
    """One denoiser step (model level) or one tiny image (pipeline level), as a CPU tensor.

    At model level ``expert`` names the denoisers that run (each one step on the same inputs, their
    outputs stacked); a pipeline call runs every expert anyway.

    ``replay`` (a recorded ``prepare_latents`` result) replaces the pipeline's own draw: a float64
    run must start from the float32 run's latents, as a seeded generator draws other numbers per
    dtype, and passing them as ``latents=`` would be rescaled (SDXL's Euler init_noise_sigma).
    """
    with torch.no_grad():
        if level == "model":
            outs = [family.denoiser_step(pipe, c, seed) for c in expert_components(family, expert)]
            return torch.cat(outs).detach().cpu()
        if replay is not None:
            dtype = getattr(pipe, family.denoiser).dtype
            pipe.prepare_latents = lambda *args, **kwargs: _cast_floats(replay, dtype)
        try:
            images = family.render(pipe, family.call_args(pipe, seed))
        finally:
            if replay is not None:
                del pipe.prepare_latents
    return torch.from_numpy(np.asarray(images))


def _cast_floats(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, tuple):
        return tuple(_cast_floats(v, dtype) for v in value)
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    return value


def drawn_latents(family: Family, pipe: Any, seed: int = 0) -> Any:
    """What the pipeline's prepare_latents returns for ``seed`` (stops the call right there)."""
    drawn: list[Any] = []
    original = pipe.prepare_latents

    def recording(*args: Any, **kwargs: Any) -> Any:
        drawn.append(original(*args, **kwargs))
        raise _Drawn

    pipe.prepare_latents = recording
    try:
        with torch.no_grad():
            family.call(pipe, family.call_args(pipe, seed))
    except _Drawn:
        pass
    finally:
        del pipe.prepare_latents
    return drawn[0]


class _Drawn(Exception):
    """Stops a pipeline call once its latents are drawn."""


def prepare_for_hotswap(pipe: Any, family: Family, level: str, target_rank: int, expert: str | None = None) -> None:
    if level == "model":
        for component in expert_components(family, expert):
            getattr(pipe, component).enable_lora_hotswap(target_rank=target_rank)
    else:  # every LoRA-loadable component, both experts included
        pipe.enable_lora_hotswap(target_rank=target_rank)


def start(
    family: Family | str,
    first_lora: Source,
    target_rank: int,
    level: str = "model",
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    backend: str = "eager",
    mode: str | None = None,
    model_path: str | None = None,
    pipe: Any = None,
    expert: str | None = None,
    quantization: str | None = None,
    twin: Any = None,
) -> HotswapSession:
    """A pipeline prepared for hotswap, ``first_lora`` loaded, the denoiser compiled and warmed up;
    ``pipe``: that pipeline already built (``dtype``, ``device``, ``model_path``, ``quantization``), no
    LoRA loaded; ``expert``: for a family of several denoisers, the expert(s) loaded, compiled and swapped;
    ``quantization``: the denoiser(s) quantized by that parity/quant/registry.py name; ``twin``: for a
    quantized session, the same model already built unquantized (else built when first needed)."""
    fam = get_family(family) if isinstance(family, str) else family
    reset()
    if pipe is None:
        pipe = build_pipeline(fam, dtype=dtype, device=device, model_path=model_path, quantization=quantization)
    session = HotswapSession(fam, pipe, level, dtype, device, target_rank, backend, mode, model_path,
                             pristine=fc.pristine_copy(pipe), loaded=base_digests(pipe, quantization), expert=expert,
                             quantization=quantization, twin=twin if quantization is not None else None)
    t0 = time.perf_counter()
    prepare_for_hotswap(pipe, fam, level, target_rank, expert)
    _load(pipe, fam, level, first_lora, hotswap=False, expert=expert, reading=session.reading)
    for denoiser in session.denoisers:
        compile_in_place(denoiser, backend, mode)
    run(fam, pipe, level, session.seed, expert=expert)
    # A second call before any swap: a model whose first call fills a cache recompiles here with no
    # LoRA involved (Z-Image's RopeEmbedder fills freqs_cis, guarded `self.freqs_cis is None`), and that
    # is no swap's doing. Recorded on the session; the swaps are watched from a settled model.
    with watch_compiles() as settle:
        run(fam, pipe, level, session.seed, expert=expert)
    if settle.recompiled:
        session.warmup_recompiles = settle.reasons or [settle.summary()]
        run(fam, pipe, level, session.seed, expert=expert)
    if mode == "reduce-overhead":  # CUDA graphs are recorded on the second call of a graph, not the first
        run(fam, pipe, level, session.seed, expert=expert)
    session.compile_seconds = time.perf_counter() - t0
    return session


@dataclass
class SwapResult:
    watch: CompileWatch
    swap_seconds: float
    call_seconds: float
    output: torch.Tensor | None
    error: Exception | None = None


def swap(session: HotswapSession, source: Source) -> SwapResult:
    """Hotswap ``source`` in and call once, under the recompile guard."""
    output, error = None, None
    swap_seconds = call_seconds = 0.0
    with watch_compiles() as watch:
        try:
            t0 = time.perf_counter()
            _load(session.pipe, session.family, session.level, source, hotswap=True, expert=session.expert,
                  reading=session.reading)
            swap_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            output = run(session.family, session.pipe, session.level, session.seed, expert=session.expert)
            call_seconds = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 — a refused swap is a result the checks inspect
            from torch._dynamo.exc import RecompileError

            if isinstance(exc, RecompileError):
                raise
            error = exc
    return SwapResult(watch, swap_seconds, call_seconds, output, error)


def fresh_output(session: HotswapSession, source: Source, values: fc.Values | None = None,
                 replay: Any = None) -> torch.Tensor:
    """The output of a fresh eager load of only ``source``, on a copy of the session's pipeline from
    before its first load: in the session's dtype and prepared for hotswap as it was, or, given the
    float64 ``values`` of the base tensors, computed as a float64 pipeline loaded without preparing (a
    quantized session's: its float twin's modules, the quantized weights dequantized)."""
    fam, level, expert = session.family, session.level, session.expert
    if values is None:
        pipe = fc.aliased_copy(session.pristine)
        prepare_for_hotswap(pipe, fam, level, session.target_rank, expert)
    else:
        pipe = fc.float64_copy(session.reference_pristine, values)
    _load(pipe, fam, level, source, hotswap=False, expert=expert, reading=session.reading)
    return run(fam, pipe, level, replay=replay, expert=expert)


def merged_output(session: HotswapSession, source: Source, values: fc.Values, replay: Any = None) -> torch.Tensor:
    """The base pipeline with our reference merge of ``source`` as its weights (no PEFT), in float64.

    This is the ground truth: the function the LoRA is supposed to add, computed without diffusers
    or PEFT touching the weights. Each merged weight is computed when its module runs, not kept.
    """
    pristine = session.reference_pristine
    lora = source if isinstance(source, LoraFile) else read_lora(source, session.family.components(pristine))
    if session.expert is not None:  # read against transformer, merged into the session's experts
        lora = place(lora, session.family, session.expert)
    refs = reference_merge(fc.lazy_weights(pristine, values), [(lora, 1.0)])
    merged = set(refs)  # `in refs` would compute the reference it asks about

    def merged_values(component: str, name: str) -> torch.Tensor:
        key = (component, name.removesuffix(".weight"))
        if name.endswith(".weight") and key in merged:
            return refs[key].merged
        return refs[component, name].merged if (component, name) in merged else values(component, name)

    return run(session.family, fc.float64_copy(pristine, merged_values), session.level, replay=replay,
               expert=session.expert)


def parameter_footprint(model: torch.nn.Module | HotswapSession) -> tuple[int, int]:
    """(number of parameters, bytes) of a denoiser, or of every denoiser a session swaps: hotswap must
    not grow either."""
    models = model.denoisers if isinstance(model, HotswapSession) else [model]
    params = [p for m in models for p in m.parameters()]
    return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)


@dataclass
class SwapOutputReport:
    """A swapped output against a fresh load, and diffusers' LoRA forward against our merge."""

    vs_fresh: float  # max |compiled − fresh eager model prepared the same way|, in the model dtype
    fresh_budget: float  # 0 where the arithmetic is the same; else 2 · the dtype's forward error
    forward_error: float  # e_fwd = max |fresh (dtype) − fresh (float64)|: the dtype's rounding here
    vs_reference: float  # max |fresh LoRA forward (float64) − our merge (float64)|
    reference_budget: float  # the float64 run's rounding, scaled from e_fwd by u_64 / u_dtype
    # Base tensors no longer as loaded: the fresh loads share them, so none may change.
    base_changed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.vs_fresh <= self.fresh_budget and self.vs_reference <= self.reference_budget \
            and not self.base_changed

    def failures(self) -> list[str]:
        out = []
        if self.base_changed:
            more = f" and {len(self.base_changed) - 1} more" if len(self.base_changed) > 1 else ""
            out.append(f"changed base tensor {self.base_changed[0]}{more} (a LoRA load or swap must leave "
                       "every base weight as loaded)")
        if self.vs_fresh > self.fresh_budget:
            out.append(f"differs from a fresh eager load by {self.vs_fresh:.3g} (budget {self.fresh_budget:.3g})")
        if self.vs_reference > self.reference_budget:
            out.append(
                f"the LoRA forward differs from our reference merge by {self.vs_reference:.3g} in float64 "
                f"(budget {self.reference_budget:.3g})"
            )
        return out


def check_swap_output(session: HotswapSession, source: Source, output: torch.Tensor) -> SwapOutputReport:
    """Compare a swapped output with fresh eager loads of ``source`` and with our reference merge of it.

    The dtype's own forward rounding is measured, not assumed: e_fwd is how far a fresh load in the
    model dtype lands from the same fresh load run in float64 (same inputs, same latents).
    """
    fam, level, dtype = session.family, session.level, session.dtype
    # One copy of the model in memory: each fresh load is a copy of the session's pipeline sharing its
    # weights (or, in float64, holding one module's at a time), made and dropped in turn.
    base_changed = changed_base(session.pipe, session.loaded, session.quantization)
    prepared = fresh_output(session, source)
    replay = drawn_latents(fam, session.pipe, session.seed) if level == "pipeline" else None
    values = reference_values(session)
    fresh64 = fresh_output(session, source, values, replay=replay).double()
    truth = merged_output(session, source, values, replay=replay).double()
    forward_error = float((prepared.double() - fresh64).abs().max())
    exact = session.backend == "eager" and level == "model"
    kind = "same-arithmetic" if exact else "reordered"
    fresh_budget = output_budget(forward_error, fresh64, dtype, kind)
    reference_budget = output_budget(forward_error, truth, torch.float64, "float64-reference", dtype)
    return SwapOutputReport(
        vs_fresh=float((output.double() - prepared.double()).abs().max()),
        fresh_budget=fresh_budget,
        forward_error=forward_error,
        vs_reference=float((fresh64 - truth).abs().max()),
        reference_budget=reference_budget,
        base_changed=base_changed,
    )


def _plain(t: torch.Tensor) -> torch.Tensor:
    """A quantized tensor as plain values a digest can read (torchao's subclasses implement no view):
    our float64 dequantization, a GGUF tensor's own bytes; any other tensor as it is."""
    from parity.quant.dequant import dequantize

    deq = dequantize(t)
    if deq is not None:
        return deq.weight
    return t.as_tensor() if hasattr(t, "as_tensor") else t


def _quantized_weights(pipe: Any) -> dict[str, torch.Tensor]:
    return {f"{c}.{name}": _plain(t) for c, m in pipeline_models(pipe).items() for name, t in live_weights(m).items()}


def base_digests(pipe: Any, quantization: str | None = None) -> dict[str, Digest]:
    """``component.name`` → digest of every base tensor (fresh_copies.digests), a quantized one's values
    digested through their dequantization."""
    return fc.digests(pipe) if quantization is None else digests_of(_quantized_weights(pipe))


def changed_base(pipe: Any, before: dict[str, Digest], quantization: str | None = None) -> list[str]:
    """The base tensors of ``pipe`` no longer as ``before`` recorded (fresh_copies.changed_tensors)."""
    if quantization is None:
        return fc.changed_tensors(pipe, before)
    now = _quantized_weights(pipe)
    after = digests_of({key: now[key] for key in before if key in now})
    return [key for key, d in before.items() if after.get(key) != d]


def reference_values(session: HotswapSession) -> fc.Values:
    """Each base tensor's float64-exact value for the float64 runs: the stored values
    (fresh_copies.stored_values); on a quantized base, every quantized weight as our dequantization of
    what the session's denoiser stores (W_q), read when asked for, the rest as the float twin holds them."""
    values = fc.stored_values(session.reference_pristine, session.family, session.dtype, session.model_path,
                              session.device)
    if session.quantization is None:
        return values
    from parity.quant.dequant import dequantized_values

    return dequantized_values(pipeline_models(session.pristine), values)
