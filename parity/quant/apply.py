"""Putting a quantized denoiser into a built pipeline, as users do: ``from_pretrained`` of the denoiser
with the quantizer's config, ``from_single_file`` of a GGUF of its weights (written here, or the user's
own), or ``enable_layerwise_casting`` on it. Only the denoiser(s) are quantized, as diffusers' docs and
users' scripts do; the LoRA is loaded afterwards by whatever check runs on the pipeline.

The float denoiser is handed back beside the pipeline: the quantized check's float64 reference forward
starts from it (parity/quant/check.py); every other caller drops it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from parity.errors import ParityInputError
from parity.quant.registry import Quantizer


@contextlib.contextmanager
def _quiet_quantizers() -> Iterator[None]:
    """torchao and quanto warn on every load (a deprecation, "only bfloat16 is supported right now");
    the report says which quantizer ran, so their warnings would be noise."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("torchao", "optimum.quanto", "bitsandbytes")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def loaded_quantized(cls: type, folder: str, quantizer: Quantizer, dtype: torch.dtype, gguf_path: str | None,
                     **kwargs: Any) -> nn.Module:
    """``cls`` loaded from ``folder`` (a saved model, or its config for a GGUF) quantized by ``quantizer``:
    the one load the checks and the load+quantize benchmark both time. ``kwargs``: from_pretrained's
    (a user's folder: its subfolder and variant)."""
    from parity.zoo.loading import quiet_loader

    with quiet_loader(), _quiet_quantizers():
        if quantizer.apply == "gguf":
            from diffusers import GGUFQuantizationConfig

            return cls.from_single_file(gguf_path, config=folder, local_files_only=True, torch_dtype=dtype,
                                        quantization_config=GGUFQuantizationConfig(compute_dtype=dtype))
        assert quantizer.config is not None
        return cls.from_pretrained(folder, quantization_config=quantizer.config(dtype), torch_dtype=dtype, **kwargs)


def quantized_model(model: nn.Module, quantizer: Quantizer, dtype: torch.dtype, device: str,
                    gguf_path: str | None = None, folder: tuple[str, str, dict[str, Any]] | None = None) -> nn.Module:
    """``model`` (a diffusers ModelMixin, float) quantized by ``quantizer``: saved and loaded back as a user
    loads it (a layerwise cast is applied in place). ``gguf_path``: the user's GGUF of this model's weights,
    read instead of one written from ``model``. ``folder``: (the user's pipeline folder, the model's
    subfolder, from_pretrained's kwargs): loaded from there with the quantizer's config, as users do,
    with no copy of the weights written."""
    if quantizer.apply == "layerwise":
        model.enable_layerwise_casting(storage_dtype=quantizer.storage, compute_dtype=dtype)
        return model
    if folder is not None and quantizer.apply == "pretrained":
        path, subfolder, kwargs = folder
        quantized = loaded_quantized(type(model), path, quantizer, dtype, None, subfolder=subfolder, **kwargs)
        return (quantized.to(device) if quantizer.backend != "bitsandbytes" else quantized).eval()
    with tempfile.TemporaryDirectory(prefix="lora-parity-quant-") as tmp:
        if gguf_path is not None:  # the user's GGUF holds the weights: from_single_file needs the config only
            model.save_config(tmp)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        if quantizer.apply == "gguf" and gguf_path is None:
            from parity.quant.gguf_file import write_gguf

            gguf_path = write_gguf(model.state_dict(), os.path.join(tmp, "model.gguf"), quantizer.gguf_type)
        # a GGUF is memory-mapped: the mapping outlives the temporary file's name on POSIX
        try:
            quantized = loaded_quantized(type(model), tmp, quantizer, dtype, gguf_path)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            if quantizer.name != "gguf":
                raise
            raise ParityInputError(_misfit(gguf_path, model, exc), path=gguf_path) from None
    if quantizer.backend != "bitsandbytes":  # bnb places its weights itself and refuses .to()
        quantized = quantized.to(device)
    return quantized.eval()


def _misfit(path: str, model: nn.Module, exc: BaseException) -> str:
    """Why a user's GGUF does not load as ``model``, with the family its tensor names look like (the
    key signatures a LoRA file's family is guessed from, parity/lora/familyguess.py)."""
    from parity.lora.familyguess import guess_family
    from parity.quant.gguf_file import gguf_tensor_shapes

    try:
        names = set(gguf_tensor_shapes(path))
    except Exception as err:  # noqa: BLE001 - a file gguf-py cannot read is not a GGUF
        return f"not a GGUF file gguf-py can read ({type(err).__name__}: {' '.join(str(err).split())[:160]})"
    missing = sorted(names - set(model.state_dict()))
    guess = guess_family(names)
    like = f"; its tensor names look like {guess[0]}'s denoiser ({guess[1]!r} names)" if guess else ""
    first = f", e.g. {missing[0]}" if missing else ""
    return (f"its tensors fit no {type(model).__name__} of this family ({len(missing)} of {len(names)} names are "
            f"not the model's{first}; diffusers: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}){like}")


def _user_folder(model_path: str | None, family: Any) -> tuple[str, dict[str, Any]] | None:
    """(folder, from_pretrained kwargs) where ``model_path`` is a pipeline folder (a Hub snapshot too)."""
    if model_path is None:
        return None
    from parity.zoo.loading import pretrained_kwargs
    from parity.zoo.source import resolve

    source = resolve(model_path, family)
    return (source.path, pretrained_kwargs(model_path)) if source.kind == "folder" else None


def quantize_denoisers(pipe: Any, family: Any, quantizer: Quantizer, dtype: torch.dtype, device: str,
                       gguf_path: str | None = None, model_path: str | None = None) -> dict[str, nn.Module]:
    """Replace each denoiser of ``pipe`` by its quantized copy; returns the float ones, by component. From
    a user's folder (``model_path``) each is loaded from its subfolder with the quantizer's config."""
    floats = {}
    names = family.denoisers(pipe)
    if gguf_path is not None and len(names) > 1:
        raise ParityInputError(f"one GGUF file for the {len(names)} denoisers {', '.join(names)}: give a folder "
                               "of GGUF experts instead (not supported yet)", path=gguf_path)
    user = _user_folder(model_path, family)
    for name in names:
        model = getattr(pipe, name)
        folder = None
        if user is not None and os.path.isdir(os.path.join(user[0], name)):
            folder = (user[0], name, user[1])
        # a layerwise cast is in place: the float model the reference starts from is a copy taken first
        floats[name] = copy.deepcopy(model) if quantizer.apply == "layerwise" else model
        setattr(pipe, name, quantized_model(model, quantizer, dtype, device, gguf_path, folder))
    return floats
