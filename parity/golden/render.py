"""Rendering a golden case: the seeded pipeline call, its LoRA files, and its float64 twin.

A case renders on the family's tiny model, or on the model folder a run names (``model_path``). The
float64 twin needs no float64 model: it is the case's pipeline copied with float64 stand-ins whose
values are filled one module at a time (parity/checks/fresh_copies.py, bit for bit a float64
pipeline's output), so an update of a real model's baselines holds one model and one module in
float64, not the model twice over."""

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
from parity.zoo.family import pipeline_namespace


def _scale_kwarg(pipe: Any) -> str:
    """The __call__ argument whose ``scale`` key is the LoRA scale: UNet pipelines take
    cross_attention_kwargs, Flux joint_attention_kwargs, Qwen-Image attention_kwargs."""
    params = inspect.signature(type(pipe).__call__).parameters
    for name in ("cross_attention_kwargs", "joint_attention_kwargs", "attention_kwargs"):
        if name in params:
            return name
    raise ValueError(f"{type(pipe).__name__}.__call__ takes no attention kwargs for a LoRA scale")


def _lora_file(fam: Any, components: Any, adapter: str, case: GoldenCase, workdir: str) -> str:
    from parity.lora.synth import write_lora

    targets = targets_for(fam, "locon" if case.conv else "default")
    path = os.path.join(workdir, f"{fam.name}-{adapter}-{case.layout}{'-conv' if case.conv else ''}.safetensors")
    return write_lora(components, targets, path, case.layout, seed=GOLDEN_LORA_SEEDS[adapter],
                      rank=GOLDEN_LORA_RANK, alpha=GOLDEN_LORA_ALPHA)


def _quantized_pipeline(fam: Any, own: torch.dtype, device: str, model_path: str | None, quantization: str,
                        twin: bool) -> tuple[Any, Any]:
    """(pipeline, the float components the LoRA files are written from) for a quantized case: its
    denoiser(s) quantized as users do (parity/quant/apply.py); for the float64 twin, a float64 copy of the
    float pipeline whose denoiser tensors are our float64 dequantization of the quantized ones (W_q)."""
    from parity.checks.fresh_copies import float64_copy, pristine_copy, stored_values
    from parity.quant.apply import quantize_denoisers
    from parity.quant.dequant import dequantized_values
    from parity.quant.registry import require
    from parity.zoo import build_pipeline

    quantizer = require(quantization, device)
    pipe = build_pipeline(fam, dtype=own, device=device, model_path=model_path)
    pristine = pristine_copy(pipe)  # the float pipeline: new module objects, the same tensors
    components = fam.components(pristine)
    values = stored_values(pipe, fam, own, model_path, device) if twin else None
    quantize_denoisers(pipe, fam, quantizer, own, device)
    if not twin:
        return pipe, components
    denoisers = {name: getattr(pipe, name) for name in fam.denoisers(pipe)}
    return float64_copy(pristine, dequantized_values(denoisers, values)), components


def _load(pipe: Any, path: str, adapter: str, fam: Any, case: GoldenCase) -> None:
    """``load_lora_weights`` once per load the case's expert takes (parity/zoo/experts.py: the low expert
    is load_into_transformer_2=True; both is one load into each); a family of one denoiser, one load."""
    from parity.zoo.experts import load_kwargs

    for kwargs in load_kwargs(fam, case.expert):
        pipe.load_lora_weights(path, adapter_name=adapter, **kwargs)


def is_video(call: dict[str, Any]) -> bool:
    """A call that asks for ``num_frames`` renders one video: its pictures are the frames (Wan)."""
    return "num_frames" in call


def render(case: GoldenCase, dtype: torch.dtype | None = None, device: str = "cpu",
           model_path: str | None = None) -> np.ndarray:
    """The case's image, float32 HxWx3 in [0, 1] as the pipeline returns it (``output_type="np"``), or
    for a video family its frames, FxHxWx3; with ``dtype`` float64, its float64 twin (float64 pixels)."""
    from parity.checks.fresh_copies import float64_copy, pristine_copy, stored_values
    from parity.checks.fuse import fuse_all_or_nothing
    from parity.zoo import build_pipeline, get_family

    from parity.golden.quantized import FuseRefused, quantization_of

    fam = get_family(case.family)
    own = FLOAT_DTYPES[case.dtype]
    twin = dtype == torch.float64
    quantization = quantization_of(case)
    if quantization is not None:
        pipe, components = _quantized_pipeline(fam, own, device, model_path, quantization, twin)
    else:
        pipe = build_pipeline(fam, dtype=own, device=device, model_path=model_path)
        if twin:
            pipe = float64_copy(pristine_copy(pipe), stored_values(pipe, fam, own, model_path, device))
        components = fam.components(pipe)
    args = fam.call_args(pipe, case.seed)
    if case.steps is not None:
        args["num_inference_steps"] = case.steps
    with tempfile.TemporaryDirectory(prefix="golden-lora-") as workdir:
        if case.op == "base":
            pass
        elif case.op in ("lora", "fused", "schedule"):
            _load(pipe, _lora_file(fam, components, "a", case, workdir), "a", fam, case)
            if case.op == "lora":
                args[_scale_kwarg(pipe)] = {"scale": case.scale}
            elif case.op == "fused" and twin:
                # float64 stand-ins cannot be written: the twin runs the adapter unfused at the fuse's
                # scale in every component, the same function up to float64 rounding
                pipe.set_adapters(["a"], adapter_weights=[case.scale])
            elif case.op == "fused" and quantization is not None:
                try:  # the pipeline is thrown away if the fuse raises: nothing to restore
                    fuse_all_or_nothing(pipe, fam.components(pipe), case.scale, restore=False)
                except Exception as exc:  # noqa: BLE001 - what diffusers does on this quantizer is the measurement
                    first = (str(exc).strip().splitlines() or [""])[0][:240]
                    raise FuseRefused(f"{case.id}: fuse_lora raised on the {quantization} denoiser: "
                                      f"{type(exc).__name__}: {first}") from exc
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
                _load(pipe, _lora_file(fam, components, name, case, workdir), name, fam, case)
            pipe.set_adapters(["a", "b"], adapter_weights=[0.5, 1.0])
        else:
            raise ValueError(f"unknown golden op {case.op!r}")
        with torch.no_grad(), noise_drawn_in(pipe, case.dtype):
            images = fam.render(pipe, args)
    # an image call's batch of one → its image; a video call's pictures are its frames
    image = np.asarray(images if is_video(args) else images[0], dtype=np.float64 if twin else np.float32)
    return image


@contextlib.contextmanager
def noise_drawn_in(pipe: Any, dtype_name: str) -> Iterator[None]:
    """Draw the initial noise in the case's dtype whatever the pipeline's dtype. torch.randn with a
    float64 dtype consumes the generator differently (other numbers, not a wider copy), so a float64
    twin of a float32 render would start from different latents; pipelines import diffusers'
    randn_tensor by name, so it is wrapped in the namespace of the pipeline's own code for the duration
    of the call (parity/zoo/family.py: pipeline_namespace)."""
    namespace = pipeline_namespace(pipe)
    original = namespace.get("randn_tensor")
    draw_dtype = FLOAT_DTYPES[dtype_name]
    if original is None:
        yield
        return

    def randn_tensor(shape: Any, generator: Any = None, device: Any = None, dtype: Any = None, **kw: Any) -> Any:
        noise = original(shape, generator=generator, device=device, dtype=draw_dtype, **kw)
        return noise.to(dtype) if dtype is not None else noise

    namespace["randn_tensor"] = randn_tensor
    try:
        yield
    finally:
        namespace["randn_tensor"] = original


def case_metadata(case: GoldenCase, model_path: str | None = None) -> dict[str, Any]:
    """What the manifest records about how the image is made (compared before pixels): on a model folder
    also the folder, so that a baseline of one model is never read as another's."""
    from parity.zoo import get_family

    call = get_family(case.family).pipeline_call_args(case.seed)
    prompt = call.get("prompt")
    if prompt is None:
        prompt = f"<prompt_embeds from seed {case.seed}>"
    from parity.zoo.loading import variant_of

    # a folder's fp16 variant is another model than its full weights
    model = {} if model_path is None else {"model": os.path.abspath(model_path),
                                           **({"variant": variant_of(model_path)} if variant_of(model_path) else {})}
    from parity.golden.quantized import quantization_metadata

    return {**model,
        **quantization_metadata(case),
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
        # a video's frame count (the stored PNG is its frames side by side) and a LoRA's expert: only where
        # they apply, so the entries of image families read as before
        **({"frames": call["num_frames"]} if is_video(call) else {}),
        **({"expert": case.expert} if case.expert is not None else {}),
        "dtype": case.dtype,
        "lora": {"rank": GOLDEN_LORA_RANK, "alpha": GOLDEN_LORA_ALPHA, "seeds": GOLDEN_LORA_SEEDS},
    }


def forward_error(case: GoldenCase, image: np.ndarray, device: str = "cpu", model_path: str | None = None) -> float:
    """e_fwd: max |image − the same render in float64| (the dtype's rounding on this very computation)."""
    ref = render(case, torch.float64, device, model_path)
    return float(np.abs(np.asarray(image, dtype=np.float64) - ref).max())


_RENDERS: dict[tuple[GoldenCase, str, str | None], np.ndarray] = {}


def render_cached(case: GoldenCase, device: str = "cpu", model_path: str | None = None) -> np.ndarray:
    """render(), once per case, device and model in this process (relations reuse other cases' renders)."""
    key = (case, device, model_path)
    if key not in _RENDERS:
        image = render(case, device=device, model_path=model_path)
        image.setflags(write=False)
        _RENDERS[key] = image
    return _RENDERS[key]
