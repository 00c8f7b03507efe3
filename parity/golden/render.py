"""Rendering a golden case: the seeded pipeline call, its LoRA files, and its float64 twin."""

from __future__ import annotations

import contextlib
import inspect
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from parity.checks.cases import GOLDEN_LORA_ALPHA, GOLDEN_LORA_RANK, GOLDEN_LORA_SEEDS, GoldenCase, targets_for
from parity.tolerances import FLOAT_DTYPES


def _scale_kwarg(pipe: Any) -> str:
    """The __call__ argument whose ``scale`` key is the LoRA scale: UNet pipelines take
    cross_attention_kwargs, Flux joint_attention_kwargs, Qwen-Image attention_kwargs."""
    params = inspect.signature(type(pipe).__call__).parameters
    for name in ("cross_attention_kwargs", "joint_attention_kwargs", "attention_kwargs"):
        if name in params:
            return name
    raise ValueError(f"{type(pipe).__name__}.__call__ takes no attention kwargs for a LoRA scale")


def _lora_file(fam: Any, pipe: Any, adapter: str, case: GoldenCase, workdir: str) -> str:
    from parity.lora.synth import write_lora

    targets = targets_for(fam, "locon" if case.conv else "default")
    path = os.path.join(workdir, f"{fam.name}-{adapter}-{case.layout}{'-conv' if case.conv else ''}.safetensors")
    return write_lora(fam.components(pipe), targets, path, case.layout, seed=GOLDEN_LORA_SEEDS[adapter],
                      rank=GOLDEN_LORA_RANK, alpha=GOLDEN_LORA_ALPHA)


def render(case: GoldenCase, dtype: torch.dtype | None = None, device: str = "cpu") -> np.ndarray:
    """The case's image, float32 HxWx3 in [0, 1] as the pipeline returns it (``output_type="np"``)."""
    from parity.checks.fuse import fuse_all_or_nothing
    from parity.zoo import build_pipeline, get_family

    fam = get_family(case.family)
    dtype = dtype or FLOAT_DTYPES[case.dtype]
    pipe = build_pipeline(fam, dtype=dtype, device=device)
    args = fam.call_args(pipe, case.seed)
    if case.steps is not None:
        args["num_inference_steps"] = case.steps
    with tempfile.TemporaryDirectory(prefix="golden-lora-") as workdir:
        if case.op == "base":
            pass
        elif case.op in ("lora", "fused", "schedule"):
            pipe.load_lora_weights(_lora_file(fam, pipe, "a", case, workdir), adapter_name="a")
            if case.op == "lora":
                args[_scale_kwarg(pipe)] = {"scale": case.scale}
            elif case.op == "fused":
                fuse_all_or_nothing(pipe, fam.components(pipe), case.scale)
            else:
                pipe.set_adapters(["a"], adapter_weights=[1.0])

                def after_step(p: Any, step: int, timestep: Any, kwargs: dict) -> dict:
                    # diffusers calls this after scheduler.step of `step`: step 1 onwards runs at 0.5.
                    if step == 0:
                        p.set_adapters(["a"], adapter_weights=[0.5])
                    return {}

                args["callback_on_step_end"] = after_step
        elif case.op == "two":
            for name in ("a", "b"):
                pipe.load_lora_weights(_lora_file(fam, pipe, name, case, workdir), adapter_name=name)
            pipe.set_adapters(["a", "b"], adapter_weights=[0.5, 1.0])
        else:
            raise ValueError(f"unknown golden op {case.op!r}")
        with torch.no_grad(), _noise_drawn_in(pipe, case.dtype):
            images = pipe(**args).images
    image = np.asarray(images[0], dtype=np.float64 if dtype == torch.float64 else np.float32)
    return image


@contextlib.contextmanager
def _noise_drawn_in(pipe: Any, dtype_name: str) -> Iterator[None]:
    """Draw the initial noise in the case's dtype whatever the pipeline's dtype. torch.randn with a
    float64 dtype consumes the generator differently (other numbers, not a wider copy), so a float64
    twin of a float32 render would start from different latents; pipelines import diffusers'
    randn_tensor by name, so it is wrapped in the pipeline's own module for the duration of the call."""
    import sys

    module = sys.modules[type(pipe).__module__]
    original = getattr(module, "randn_tensor", None)
    draw_dtype = FLOAT_DTYPES[dtype_name]
    if original is None:
        yield
        return

    def randn_tensor(shape: Any, generator: Any = None, device: Any = None, dtype: Any = None, **kw: Any) -> Any:
        noise = original(shape, generator=generator, device=device, dtype=draw_dtype, **kw)
        return noise.to(dtype) if dtype is not None else noise

    module.randn_tensor = randn_tensor
    try:
        yield
    finally:
        module.randn_tensor = original


def case_metadata(case: GoldenCase) -> dict[str, Any]:
    """What the manifest records about how the image is made (compared before pixels)."""
    from parity.zoo import get_family

    call = get_family(case.family).pipeline_call_args(case.seed)
    prompt = call.get("prompt")
    if prompt is None:
        prompt = f"<prompt_embeds from seed {case.seed}>"
    return {
        "case": case.id,
        "family": case.family,
        "op": case.op,
        "scale": case.scale,
        "layout": case.layout,
        "conv": case.conv,
        "seed": case.seed,
        "prompt": prompt,
        "steps": case.steps or call["num_inference_steps"],
        "size": [call["height"], call["width"]],
        "dtype": case.dtype,
        "lora": {"rank": GOLDEN_LORA_RANK, "alpha": GOLDEN_LORA_ALPHA, "seeds": GOLDEN_LORA_SEEDS},
    }


def forward_error(case: GoldenCase, image: np.ndarray, device: str = "cpu") -> float:
    """e_fwd: max |image − the same render in float64| (the dtype's rounding on this very computation)."""
    ref = render(case, torch.float64, device)
    return float(np.abs(np.asarray(image, dtype=np.float64) - ref).max())


_RENDERS: dict[tuple[GoldenCase, str], np.ndarray] = {}


def render_cached(case: GoldenCase, device: str = "cpu") -> np.ndarray:
    """render(), once per case and device in this process (relations reuse other cases' renders)."""
    key = (case, device)
    if key not in _RENDERS:
        image = render(case, device=device)
        image.setflags(write=False)
        _RENDERS[key] = image
    return _RENDERS[key]
