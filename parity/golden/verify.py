"""One golden case end to end: update (render twice, refuse what is not reproducible, store), then
verify its pixels against the baseline and its relation to another case. Thresholds live in
``parity/tolerances.py`` (``GOLDEN_TOLERANCES``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parity.checks.cases import GoldenCase
from parity.checks.progress import SILENT, Progress
from parity.devices import device_kind
from parity.golden import render as rendering
from parity.golden.mismatch import GoldenResult, clear_mismatch, record_mismatch
from parity.golden.pixels import metrics, to_float
from parity.golden.quantized import FuseRefused, quantization_of, sibling
from parity.quant.registry import quantizer_versions
from parity.golden.store import GoldenError, GoldenStore, how_to_create, refuse_non_finite
from parity.tolerances import FLOAT_DTYPES, GoldenThresholds, golden_thresholds, output_budget
from parity.versions import library_versions


def update_case(
    store: GoldenStore,
    case: GoldenCase,
    device: str = "cpu",
    renderer: Callable[[GoldenCase], np.ndarray] | None = None,
    error_fn: Callable[[GoldenCase, np.ndarray], float] | None = None,
    model_path: str | None = None,
) -> dict[str, Any]:
    """Render twice, refuse non-finite or differing runs (as peft's regression tests do), measure e_fwd
    against float64, store. Returns the manifest entry written."""
    renderer = renderer or (lambda c: rendering.render(c, device=device, model_path=model_path))
    first = renderer(case)
    refuse_non_finite(case.id, first)
    second = renderer(case)
    refuse_non_finite(case.id, second)
    if not np.array_equal(first, second):
        diff = float(np.abs(np.asarray(first, np.float64) - np.asarray(second, np.float64)).max())
        raise GoldenError(f"{case.id}: two consecutive runs differ (max |diff| {diff:.3g}); refusing to store "
                          "a baseline that is not reproducible")
    e_fwd = (error_fn or (lambda c, im: rendering.forward_error(c, im, device, model_path)))(case, first)
    if not math.isfinite(e_fwd):
        raise GoldenError(f"{case.id}: the float64 reference render is not finite; refusing to store")
    versions = library_versions()
    if quantization_of(case) is not None:  # the quantizers' own: an upgrade of torchao or gguf moves these images
        versions.update(quantizer_versions())
    entry = {**rendering.case_metadata(case, model_path), "device_class": store.cls, "float64_error": e_fwd,
             "versions": versions}
    store.write(case, first, entry)
    return entry


def compare_image(
    case_id: str, expected_u8: np.ndarray, actual: np.ndarray, thresholds: GoldenThresholds,
    report_dir: Path | None, extra_failures: Sequence[str] = (),
) -> GoldenResult:
    """Compare a float render with a stored 8-bit baseline; on mismatch write the artifacts. A video
    (FxHxWx3) is compared frame by frame, each frame an image held to the same thresholds: the max-abs
    bound is per pixel, and the PSNR and SSIM floors it implies hold for every frame it holds in (a
    failure names its frame); the result's metrics are the worst frame's."""
    expected = to_float(expected_u8)
    failures = list(extra_failures)
    frames = None
    if np.asarray(actual).shape != expected.shape:
        m = metrics(expected, actual)  # -inf, -inf, inf
        failures.append(f"shape {np.asarray(actual).shape} != baseline {expected.shape}")
    elif not np.isfinite(np.asarray(actual, np.float64)).all():
        m = metrics(expected, actual)
        failures.append("the render has non-finite pixel values")
    elif expected.ndim == 4:
        frames = [metrics(e, a) for e, a in zip(expected, np.asarray(actual))]
        m = {"ssim": min(f["ssim"] for f in frames), "psnr": min(f["psnr"] for f in frames),
             "max_abs": max(f["max_abs"] for f in frames)}
        failures += [f"frame {i}: {why}" for i, f in enumerate(frames) for why in _over(f, thresholds)]
    else:
        m = metrics(expected, actual)
        failures += _over(m, thresholds)
    result = GoldenResult(case_id, not failures, m, thresholds, failures, frames=frames)
    if report_dir is not None:
        if result.ok:
            clear_mismatch(Path(report_dir), case_id)
        elif np.asarray(actual).shape == expected.shape:
            result.artifact = str(record_mismatch(Path(report_dir), result, expected, actual))
    return result


def _over(m: dict[str, float], thresholds: GoldenThresholds) -> list[str]:
    """The thresholds one image's metrics miss."""
    failures = []
    if m["max_abs"] > thresholds.max_abs:
        failures.append(f"max-abs {m['max_abs']:.3g} > {thresholds.max_abs:.3g}")
    if m["psnr"] < thresholds.psnr:
        failures.append(f"PSNR {m['psnr']:.2f} < {thresholds.psnr:.2f} dB")
    if m["ssim"] < thresholds.ssim:
        failures.append(f"SSIM {m['ssim']:.5f} < {thresholds.ssim:.5f}")
    return failures


def verify_image(store: GoldenStore, case: GoldenCase, image: np.ndarray, report_dir: Path | None,
                 model_path: str | None = None) -> GoldenResult:
    """Compare ``image`` with the stored baseline of ``case`` (GoldenError when there is none)."""
    expected, entry = store.load(case)
    made = rendering.case_metadata(case, model_path)
    changed = [
        f"case definition changed since the baseline: {k} {entry.get(k)!r} -> {made.get(k)!r} (regenerate it)"
        # a tiny render against a folder's baseline too, and a float render against a quantized one
        for k in sorted(set(made) | ({"model", "quantization"} & set(entry)))
        if k != "lora" and entry.get(k) != made.get(k)
    ]
    thresholds = golden_thresholds(device_kind(store.cls), case.dtype, float(entry["float64_error"]))
    return compare_image(case.id, expected, image, thresholds, report_dir, changed)


@dataclass
class RelationResult:
    ok: bool
    max_abs: float
    budget: float
    detail: str


def check_relation(case: GoldenCase, image: np.ndarray, other: np.ndarray, store: GoldenStore,
                   other_error: float | None = None) -> RelationResult:
    """``case`` must reproduce ``case.same_as``'s render (fresh renders, no quantisation) within
    OUTPUT_TOLERANCES[case.relation]; e_fwd is the other case's stored float64 error, or ``other_error``
    where an update measured it (the other case not stored yet)."""
    other_id = sibling(case, case.same_as).id
    diff = float(np.abs(np.asarray(image, np.float64) - np.asarray(other, np.float64)).max())
    if not math.isfinite(diff):
        return RelationResult(False, math.inf, 0.0, f"{case.id} vs {other_id}: non-finite pixels")
    if case.relation == "same-arithmetic":
        budget = 0.0
    else:
        entry = store.entry(other_id) if other_error is None else {"float64_error": other_error}
        if entry is None:
            raise GoldenError(how_to_create(other_id, case.family, store.root, store.cls))
        budget = output_budget(float(entry["float64_error"]), torch.from_numpy(np.asarray(other, np.float64)),
                               FLOAT_DTYPES[case.dtype], case.relation)
    ok = diff <= budget
    return RelationResult(ok, diff, budget,
                          f"{case.id} vs {other_id} ({case.relation}): max |diff| {diff:.3g} <= {budget:.3g}"
                          + ("" if ok else "  FAILED"))


@dataclass
class CaseOutcome:
    case: str
    ok: bool
    lines: list[str]
    result: GoldenResult | None = None
    skipped: str | None = None  # why the case has no image here (a quantized fuse that raises, no baseline)


def run_case(store: GoldenStore, case: GoldenCase, report_dir: Path | None, update: bool = False,
             device: str = "cpu", model_path: str | None = None) -> CaseOutcome:
    """Update (if asked) then verify one case: pixels against the baseline, then its relation (fused ≈
    unfused, kohya = diffusers) and, for a schedule, that the schedule changed the image at all.
    A missing baseline without ``update`` is a failure carrying the command that creates it."""
    lines: list[str] = []
    try:
        if update:
            update_case(store, case, device, model_path=model_path)
            lines.append(f"{case.id}: baseline written to {store.dir / (case.id + '.png')}")
        elif not store.has(case.id):
            return CaseOutcome(case.id, False, [how_to_create(case.id, case.family, store.root, store.cls)])
        image = rendering.render_cached(case, device, model_path)
    except FuseRefused as exc:
        # measured: the fuse raised on this quantized denoiser. Nothing to compare where no baseline was
        # ever made; where one was, the fuse worked when it was made, and raising now is a regression.
        if store.has(case.id) and not update:
            return CaseOutcome(case.id, False, [f"{exc} (its baseline was rendered fused)"])
        return CaseOutcome(case.id, True, [f"{exc}: no image to compare, none stored"], skipped=str(exc))
    try:
        result = verify_image(store, case, image, report_dir, model_path)
    except GoldenError as exc:
        return CaseOutcome(case.id, False, [str(exc)])
    ok = result.ok
    lines.append(result.message())
    if case.same_as is not None:
        other_case = sibling(case, case.same_as)
        other = rendering.render_cached(other_case, device, model_path)
        # where the other case is not stored (not selected, or an update's on another xdist worker now),
        # its e_fwd is measured here as its update would: a verify and an update of the same selection agree
        other_error = (rendering.forward_error(other_case, other, device, model_path)
                       if not store.has(other_case.id) else None)
        rel = check_relation(case, image, other, store, other_error)
        ok &= rel.ok
        lines.append(rel.detail)
    if case.op == "schedule":
        constant = rendering.render_cached(replace(case, op="lora", scale=1.0), device, model_path)
        moved = float(np.abs(np.asarray(image, np.float64) - constant).max())
        distinct = moved > result.thresholds.max_abs
        ok &= distinct
        lines.append(f"{case.id}: schedule vs constant weight 1.0: max |diff| {moved:.3g} "
                     f"{'>' if distinct else '<='} {result.thresholds.max_abs:.3g}"
                     + ("" if distinct else "  FAILED: the weight change in callback_on_step_end had no effect"))
    return CaseOutcome(case.id, ok, lines, result)


def run_cases(store: GoldenStore, cases: Sequence[GoldenCase], report_dir: Path | None, update: bool = False,
              device: str = "cpu", progress: Progress = SILENT,
              on_outcome: Callable[[CaseOutcome], None] = lambda outcome: None,
              model_path: str | None = None) -> list[CaseOutcome]:
    """``run_case`` over ``cases`` in turn; an update is one transaction: its baselines are committed
    together after the last case, and discarded if the run is interrupted (``store`` stages them)."""
    progress.plan(len(cases))
    outcomes = []
    try:
        for case in cases:
            with progress.step(f"{'update' if update else 'verify'} {case.id}") as outcome:
                try:
                    result = run_case(store, case, report_dir, update, device, model_path)
                except GoldenError as exc:  # an update refused (non-finite or unreproducible render)
                    result = CaseOutcome(case.id, False, [str(exc)])
                outcome(result.ok)
            on_outcome(result)
            outcomes.append(result)
    except BaseException:
        store.discard_update()
        raise
    if update:
        store.commit_update()
    return outcomes
