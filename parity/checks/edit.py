"""The Qwen-Image-Edit-2509 workflow as its users run it, as one check.

Users edit input images with ``QwenImageEditPlusPipeline`` (parity/zoo/qwenimage_edit.py: a prompt,
``negative_prompt=" "``, ``true_cfg_scale=4.0``, ``guidance_scale=1.0``, a seeded generator) and apply a
LoRA one of two ways:

- no fuse: ``load_lora_weights(file, adapter_name=n)`` + ``set_adapters(n, adapter_weights=[1.0])``;
- fuse: ``unfuse_lora()`` → ``load_lora_weights(file, adapter_name=n)`` →
  ``fuse_lora(adapter_names=[n], lora_scale=1.0, safe_fusing=True)``.

The check renders the no-fuse image, its float64 twin (the same pipeline computing in float64,
parity/checks/fresh_copies.py) for the forward error e_fwd, and the fused image; the two must agree
within OUTPUT_TOLERANCES["fused"] (parity/tolerances.py), the fused weights must match our reference
merge (the merge check's own measurement), and the LoRA must move the image by more than that budget,
so that agreement means something. ``sequence`` is where the fuse block runs: on a fresh pipeline
("fresh"), or as the workflow's own code runs it, after the no-fuse block on the same pipeline
("one-pipeline"); what diffusers does there is reported, not assumed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parity.checks.cases import EDIT_SEQUENCES as SEQUENCES
from parity.checks.check import known_behaviour
from parity.checks.findings import EDIT_SAME_ADAPTER_NAME
from parity.checks.fresh_copies import float64_copy, pristine_copy, release_free_heap, stored_values
from parity.checks.fuse import MergeResult, changed_untargeted, live, measure_merge, snapshot, targeted_parameters
from parity.checks.memory import gate_memory, predict_check
from parity.golden.mismatch import side_by_side
from parity.golden.pixels import png_bytes
from parity.golden.render import noise_drawn_in
from parity.lora.reader import read_lora
from parity.modules import pipeline_models
from parity.reference.merge import reference_merge
from parity.tolerances import FLOAT_DTYPES, output_budget
from parity.zoo import build_pipeline, get_family
from parity.zoo.checkpoint import CheckpointWeights
from parity.zoo.qwenimage_edit import NAME, input_image

ADAPTER = "edit"  # the adapter name the workflow loads its file as
OUTPUT_KIND = "fused"  # OUTPUT_TOLERANCES entry of fused against no-fuse
SAFE_FUSING = True  # the workflow's; the refused-fuse check's negative control turns it off


@dataclass(frozen=True)
class EditRequest:
    lora: str
    dtype: str = "float32"
    images: int = 1  # input images of the edit call
    sequence: str = "fresh"
    seed: int = 0
    model_path: str | None = None
    device: str = "cpu"
    family: str = NAME


@dataclass
class EditReport:
    request: EditRequest
    no_fuse: np.ndarray  # HxWx3 in [0, 1], as the pipeline returns it
    base: np.ndarray  # the same call without the LoRA
    float64_error: float  # e_fwd: max |no-fuse image − its float64 twin|
    lora_effect: float  # max |no-fuse − base|
    fused: np.ndarray | None = None
    diff: float = float("nan")  # max |fused − no-fuse|
    budget: float = 0.0
    merge: MergeResult | None = None  # the workflow's fuse against the reference merge
    refused: str | None = None  # what diffusers raised in the fuse block, if it raised
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        """The numbers and verdicts (the images go to files: write_strip)."""
        merge = None if self.merge is None else {"max_ulps": self.merge.max_ulps,
                                                 "max_bound_ratio": self.merge.max_bound_ratio, "ok": self.merge.ok}
        return {**asdict(self.request), "float64_error": self.float64_error, "lora_effect": self.lora_effect,
                "diff": self.diff, "budget": self.budget, "merge": merge, "refused": self.refused,
                "failures": list(self.failures), "ok": self.ok}


def write_strip(report: EditReport, folder: Path) -> str | None:
    """no-fuse | fused | difference (red over the budget) as one PNG in ``folder``; None without a fused image."""
    if report.fused is None:
        return None
    r = report.request
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{r.dtype}-{r.images}img-{r.sequence}.png"
    path.write_bytes(png_bytes(side_by_side(report.no_fuse, report.fused, report.budget)))
    return str(path)


def render(pipe: Any, request: EditRequest, twin: bool = False) -> np.ndarray:
    """The edit call's first image; for a float64 ``twin``, with the noise drawn in the request's dtype."""
    family = get_family(request.family)
    args = family.call_args(pipe, request.seed)
    args["image"] = [input_image(request.seed, i) for i in range(request.images)]
    noise = noise_drawn_in(pipe, request.dtype) if twin else contextlib.nullcontext()
    with torch.no_grad(), noise:
        images = family.call(pipe, args).images
    return np.asarray(images[0], dtype=np.float64 if twin else np.float32)


def _no_fuse(pipe: Any, request: EditRequest) -> None:
    pipe.load_lora_weights(request.lora, adapter_name=ADAPTER)
    pipe.set_adapters(ADAPTER, adapter_weights=[1.0])


def _fuse_block(pipe: Any, request: EditRequest) -> None:
    pipe.unfuse_lora()
    pipe.load_lora_weights(request.lora, adapter_name=ADAPTER)
    pipe.fuse_lora(adapter_names=[ADAPTER], lora_scale=1.0, safe_fusing=SAFE_FUSING)


def _twin_error(pristine: Any, values: Any, request: EditRequest, no_fuse: np.ndarray) -> float:
    twin = float64_copy(pristine, values)
    _no_fuse(twin, request)
    error = float(np.abs(render(twin, request, twin=True) - no_fuse).max())
    del twin
    release_free_heap(0)
    return error


@contextlib.contextmanager
def _quiet_unfuse() -> Iterator[None]:
    """PEFT warns "Already unmerged" when the workflow's unfuse_lora() finds nothing fused."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Already unmerged")
        yield


def run_edit(request: EditRequest) -> EditReport:
    """The workflow (module docstring) on the family's tiny pipeline or ``request.model_path``."""
    if request.sequence not in SEQUENCES:
        raise ValueError(f"sequence must be one of {SEQUENCES}, not {request.sequence!r}")
    family, dtype = get_family(request.family), FLOAT_DTYPES[request.dtype]
    pipe = build_pipeline(family, dtype=dtype, device=request.device, model_path=request.model_path)
    components = family.components(pipe)
    lora = read_lora(request.lora, components, strict=True)
    if torch.device(request.device).type == "cpu":  # refused here, not killed halfway: as check predicts it
        # (one pipeline, its targeted weights, the float64 twin a module at a time; the fresh pipeline of
        # the fuse block is built after the first is freed)
        prediction = predict_check(pipeline_models(pipe), [lora], {request.dtype: dtype},
                                   copies_targeted=request.model_path is None)
        gate_memory(prediction, lambda _: None, request.model_path)
    checkpoint = CheckpointWeights(request.model_path) if request.model_path is not None else None
    before = snapshot(components, targeted_parameters([lora]), checkpoint)
    base = render(pipe, request)
    pristine = pristine_copy(pipe)
    values = stored_values(pipe, family, dtype, request.model_path, request.device)
    _no_fuse(pipe, request)
    no_fuse = render(pipe, request)
    report = EditReport(request, no_fuse, base, _twin_error(pristine, values, request, no_fuse),
                        float(np.abs(no_fuse - base).max()))
    del pristine, values
    if request.sequence == "fresh":
        del pipe, components
        pipe = build_pipeline(family, dtype=dtype, device=request.device, model_path=request.model_path)
        components = family.components(pipe)
    try:
        with _quiet_unfuse():
            _fuse_block(pipe, request)
    except (ValueError, RuntimeError) as exc:  # what diffusers/PEFT raise is the finding to report
        report.refused = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        report.failures.append(f"the fuse block raised {report.refused}")
        if request.sequence == "one-pipeline" and "already in use" in report.refused:  # its own symptom only
            report.failures.append(known_behaviour(EDIT_SAME_ADAPTER_NAME))
        return report
    refs = reference_merge(before, [(lora, 1.0)], 1.0)
    report.merge = measure_merge(before, live(components), refs, dtype, request.device, [lora])
    report.fused = render(pipe, request)
    report.diff = float(np.abs(report.fused - no_fuse).max())
    report.budget = output_budget(report.float64_error, torch.from_numpy(no_fuse.astype(np.float64)), dtype,
                                  OUTPUT_KIND)
    report.failures += [f"merge: {line}" for line in report.merge.failures()]
    if not np.isfinite(report.diff) or report.diff > report.budget:
        report.failures.append(f"the fused image differs from the no-fuse image by {report.diff:.3g} "
                               f"(budget {report.budget:.3g}: {OUTPUT_KIND})")
    if report.lora_effect <= report.budget:
        report.failures.append(f"the LoRA moves the image by {report.lora_effect:.3g}, within the budget "
                               f"{report.budget:.3g}: fused and no-fuse agreeing would prove nothing")
    return report


@dataclass
class RefusedFuse:
    """The workflow's fuse of an adapter holding NaN: what diffusers raised, and what it left changed."""

    raised: str | None
    changed: list[str]  # base tensors not bit-identical to before the fuse
    merged: list[str]  # LoRA layers PEFT marks merged

    @property
    def ok(self) -> bool:
        return self.raised is not None and not self.changed and not self.merged

    def failures(self) -> list[str]:
        out = [] if self.raised is not None else ["fuse_lora(safe_fusing=True) fused an adapter holding NaN"]
        if self.changed:
            out.append(f"the refused fuse left {len(self.changed)} base tensors changed, first {self.changed[0]}")
        if self.merged:
            out.append(f"the refused fuse left {len(self.merged)} layers marked merged, first {self.merged[0]}")
        return out


def refused_fuse(request: EditRequest) -> RefusedFuse:
    """The no-fuse block, then the workflow's ``fuse_lora(..., safe_fusing=True)`` of ``request.lora``,
    a file with NaN in it (loaded by diffusers; our reader refuses NaN, so it is not read here). The
    pipeline must be left as it was: every base tensor bit-identical (digests) and no layer merged."""
    family, dtype = get_family(request.family), FLOAT_DTYPES[request.dtype]
    pipe = build_pipeline(family, dtype=dtype, device=request.device, model_path=request.model_path)
    components = family.components(pipe)
    _no_fuse(pipe, request)
    before = snapshot(components, keep=set())  # digests only: nothing is kept but the proof
    raised = None
    try:
        pipe.fuse_lora(adapter_names=[ADAPTER], lora_scale=1.0, safe_fusing=SAFE_FUSING)
    except ValueError as exc:
        raised = " ".join(str(exc).split())
    merged = [f"{c}.{name}" for c, model in components.items() for name, layer in model.named_modules()
              if getattr(layer, "merged_adapters", None)]
    return RefusedFuse(raised, changed_untargeted(before, live(components), set()), merged)
