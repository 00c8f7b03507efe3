"""``lora_parity.golden(...)``: a seeded render of a user's LoRA files, compared with a stored PNG.

The render is a golden case's (parity/golden/render.py: the family's seeded call, its noise drawn in the
case's dtype, its float64 twin for e_fwd) with the user's files loaded by ``load_lora_weights`` in place of
the suite's synthetic ones. Everything after the render is parity/golden's: ``update_case`` (two renders
that must agree, a finite float64 error, the manifest entry), ``GoldenStore`` (atomic PNG and manifest
writes, one folder per device class), ``verify_image`` (the thresholds of parity/tolerances.py derived
from the stored float64 error, and the expected | actual | difference image on a mismatch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parity.checks.cases import GoldenCase
from parity.errors import ParityInputError


def render_files(case: GoldenCase, files: Sequence[str], weights: Sequence[float], device: str,
                 model_path: Any = None, twin: bool = False) -> np.ndarray:
    """The case's seeded render with ``files`` loaded as adapters at ``weights`` and LoRA scale
    ``case.scale``: float32 HxWx3 (FxHxWx3 for a video family), or float64 pixels for the float64 twin."""
    from parity.checks.fresh_copies import float64_copy, pristine_copy, stored_values
    from parity.golden.render import _load, _scale_kwarg, is_video, noise_drawn_in
    from parity.tolerances import FLOAT_DTYPES
    from parity.zoo import build_pipeline, get_family

    fam = get_family(case.family)
    own = FLOAT_DTYPES[case.dtype]
    pipe = build_pipeline(fam, dtype=own, device=device, model_path=model_path)
    if twin:
        pipe = float64_copy(pristine_copy(pipe), stored_values(pipe, fam, own, model_path, device))
    args = fam.call_args(pipe, case.seed)
    if case.steps is not None:
        args["num_inference_steps"] = case.steps
    names = [f"lora_parity_{i}" for i in range(len(files))]
    for path, name in zip(files, names):
        _load(pipe, path, name, fam, case)
    pipe.set_adapters(names, adapter_weights=list(weights))
    args[_scale_kwarg(pipe)] = {"scale": case.scale}
    with torch.no_grad(), noise_drawn_in(pipe, case.dtype):
        images = fam.render(pipe, args)
    return np.asarray(images if is_video(args) else images[0], dtype=np.float64 if twin else np.float32)


def golden(family: str, files: Sequence[str], name: str, *, root: Path, update: bool, device: str,
           model_path: Any = None, weights: Sequence[float] | None = None, scale: float = 1.0,
           dtype: str = "float32", seed: int = 0, steps: int | None = None,
           mismatch_dir: Path | None = None) -> tuple[bool, str, Any]:
    """(ok, text, GoldenResult or None): update the baseline if asked or missing, then verify the render."""
    from parity.devices import device_class
    from parity.golden.store import GoldenError, GoldenStore
    from parity.golden.verify import update_case, verify_image
    from parity.tolerances import FLOAT_DTYPES
    from parity.zoo import get_family
    from parity.zoo.source import describe

    fam = get_family(family)
    if dtype not in FLOAT_DTYPES:
        raise ParityInputError(f"unknown dtype {dtype!r}; use one of {', '.join(FLOAT_DTYPES)}")
    if not files:
        raise ParityInputError("golden() needs at least one LoRA file")
    for path in files:
        if not os.path.isfile(path):
            raise ParityInputError("no such LoRA file", path=path)
    weights = tuple(weights) if weights is not None else (1.0,) * len(files)
    if len(weights) != len(files):
        raise ParityInputError(f"weights has {len(weights)} value(s) for {len(files)} LoRA file(s)")
    if not name or os.sep in name or (os.altsep and os.altsep in name):
        raise ParityInputError(f"golden name {name!r}: a file name, not a path")
    case = GoldenCase(fam.name, name, "lora", scale=scale, dtype=dtype, seed=seed, steps=steps)
    store = GoldenStore(Path(root), device_class(device))
    model = describe(model_path, fam) or "tiny (built-in, seed 0)"
    lines = [f"lora-parity golden: family {fam.name}, model {model}, device {device}, dtype {dtype}, "
             f"scale {scale:g}, files {', '.join(f'{f} ({w:g})' for f, w in zip(files, weights))}"]
    image = render_files(case, files, weights, device, model_path)

    def twin_error(c: GoldenCase, rendered: np.ndarray) -> float:
        ref = render_files(c, files, weights, device, model_path, twin=True)
        return float(np.abs(np.asarray(rendered, np.float64) - ref).max())

    missing = not store.has(case.id)
    if update or missing:
        pending = [image]  # update_case renders twice and refuses a second render that differs: the first is this one
        try:
            entry = update_case(store, case, device, error_fn=twin_error, model_path=model_path,
                                renderer=lambda c: pending.pop() if pending else render_files(c, files, weights,
                                                                                              device, model_path))
        except GoldenError as exc:
            return False, "\n".join([*lines, "", str(exc), "", "FAIL: no baseline written"]), None
        # the manifest names the user's files, not the suite's synthetic LoRA the case metadata describes
        store.write(case, image, {**entry, "lora": {"files": [os.path.basename(f) for f in files],
                                                    "weights": list(weights)}})
    result = verify_image(store, case, image, mismatch_dir, model_path)
    lines += ["", result.message()]
    png = store.png_path(case.id)
    if update:
        lines.append(f"baseline written: {png}")
    elif missing:
        lines += ["", f"FAIL: there was no baseline; one was written now: {png}. Look at it, commit it, and rerun "
                  "(--lora-parity-update-golden rewrites baselines on purpose)"]
        return False, "\n".join(lines), result
    lines += ["", "PASS" if result.ok else "FAIL: the render moved beyond the golden thresholds"]
    return result.ok, "\n".join(lines), result
