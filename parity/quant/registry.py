"""The quantized bases, declared once as data: one ``Quantizer`` per ``--quantization`` choice, naming
the package it needs, how diffusers is told to apply it (as users apply it), what it needs to run here,
and what ``fuse_lora`` does on it (which the check measures, never assumes).

A new quantizer is one entry here and, where its weights are a new tensor type, one dequantizer in
parity/quant/dequant.py. Which run on this machine, and why the others do not: ``unavailable``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from parity.errors import ParityInputError


@dataclass(frozen=True, kw_only=True)
class Quantizer:
    name: str  # the --quantization choice
    backend: str  # "bitsandbytes", "torchao", "quanto", "gguf", "layerwise"
    how: str  # in words, as a user would write it
    package: str = ""  # import name of what it needs beyond diffusers ("" for nothing)
    pip: str = ""  # what to install
    # "pretrained": from_pretrained(quantization_config=config()); "gguf": a GGUF of the denoiser's weights
    # read by from_single_file; "layerwise": enable_layerwise_casting on the loaded denoiser
    apply: str = "pretrained"
    config: Callable[[torch.dtype], Any] | None = None
    needs: str = ""  # "cuda" where diffusers or the kernels refuse a CPU; "" runs anywhere
    needs_why: str = ""
    extra_package: str = ""  # a package only this mode needs (torchao int4: mslk)
    gguf_type: str = ""  # GGUF: the ggml type name written (Q8_0, Q4_0); "" for a user's file (any type)
    storage: torch.dtype | None = None  # layerwise: the storage dtype
    activations: str = ""  # "int8" / "float8": the forward also quantizes activations, so it is not x @ deq(W)
    cpu_note: str = ""

    def unavailable(self, device: str) -> str | None:
        """Why this quantizer cannot run on ``device`` here, or None."""
        for package in filter(None, (self.package, self.extra_package)):
            if importlib.util.find_spec(package.split(".")[0]) is None or importlib.util.find_spec(package) is None:
                pip = self.pip if package == self.package else package
                return f"{self.name} needs the {package} package, which is not installed (pip install {pip})"
        if self.needs == "cuda" and torch.device(device).type != "cuda":
            return f"{self.name} needs a CUDA device: {self.needs_why}"
        return None


def _bnb(**kwargs: Any) -> Callable[[torch.dtype], Any]:
    def config(dtype: torch.dtype) -> Any:
        from diffusers import BitsAndBytesConfig

        four = kwargs.get("load_in_4bit", False)
        return BitsAndBytesConfig(**kwargs, **({"bnb_4bit_compute_dtype": dtype} if four else {}))
    return config


def _torchao(name: str) -> Callable[[torch.dtype], Any]:
    def config(dtype: torch.dtype) -> Any:
        import torchao.quantization as q
        from diffusers import TorchAoConfig

        # torchao >= 0.15 wants a config object; diffusers 0.42 refuses the old strings ("int8wo")
        return TorchAoConfig(getattr(q, name)())
    return config


def _quanto(weights: str) -> Callable[[torch.dtype], Any]:
    def config(dtype: torch.dtype) -> Any:
        from diffusers import QuantoConfig

        return QuantoConfig(weights_dtype=weights)
    return config


_BNB_CPU = ("diffusers refuses bitsandbytes without one (\"No GPU found. A GPU is needed for quantization.\", "
            "its bnb quantizer's validate_environment), though bitsandbytes itself has a CPU backend")

QUANTIZERS: tuple[Quantizer, ...] = (
    Quantizer(name="bnb-nf4", backend="bitsandbytes", package="bitsandbytes", pip="bitsandbytes",
              how='BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")',
              config=_bnb(load_in_4bit=True, bnb_4bit_quant_type="nf4"), needs="cuda", needs_why=_BNB_CPU),
    Quantizer(name="bnb-fp4", backend="bitsandbytes", package="bitsandbytes", pip="bitsandbytes",
              how='BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4")',
              config=_bnb(load_in_4bit=True, bnb_4bit_quant_type="fp4"), needs="cuda", needs_why=_BNB_CPU),
    Quantizer(name="bnb-int8", backend="bitsandbytes", package="bitsandbytes", pip="bitsandbytes",
              how="BitsAndBytesConfig(load_in_8bit=True)", config=_bnb(load_in_8bit=True), needs="cuda",
              needs_why=_BNB_CPU, activations="int8"),
    Quantizer(name="torchao-int8wo", backend="torchao", package="torchao", pip="torchao",
              how="TorchAoConfig(Int8WeightOnlyConfig())", config=_torchao("Int8WeightOnlyConfig")),
    Quantizer(name="torchao-int8dq", backend="torchao", package="torchao", pip="torchao",
              how="TorchAoConfig(Int8DynamicActivationInt8WeightConfig())",
              config=_torchao("Int8DynamicActivationInt8WeightConfig"), activations="int8"),
    Quantizer(name="torchao-float8wo", backend="torchao", package="torchao", pip="torchao",
              how="TorchAoConfig(Float8WeightOnlyConfig())", config=_torchao("Float8WeightOnlyConfig")),
    # diffusers' lora-fast recipe: an FP8 base, hotswap and torch.compile (make gpu ARGS="--quantization
    # torchao-float8dq"); torchao asserts the GPU (measured: "Float8 dynamic quantization requires CUDA
    # compute capability ≥8.9 or MI300+ or XPU" on this CPU)
    Quantizer(name="torchao-float8dq", backend="torchao", package="torchao", pip="torchao",
              how="TorchAoConfig(Float8DynamicActivationFloat8WeightConfig())",
              config=_torchao("Float8DynamicActivationFloat8WeightConfig"), activations="float8", needs="cuda",
              needs_why="torchao's float8 dynamic-activation kernels need compute capability 8.9+ (H100, L4, "
                        "RTX 40xx), MI300 or XPU"),
    Quantizer(name="torchao-int4wo", backend="torchao", package="torchao", pip="torchao", extra_package="mslk",
              how="TorchAoConfig(Int4WeightOnlyConfig())", config=_torchao("Int4WeightOnlyConfig")),
    Quantizer(name="quanto-int8", backend="quanto", package="optimum.quanto", pip="optimum-quanto",
              how='QuantoConfig(weights_dtype="int8")', config=_quanto("int8")),
    Quantizer(name="quanto-float8", backend="quanto", package="optimum.quanto", pip="optimum-quanto",
              how='QuantoConfig(weights_dtype="float8")', config=_quanto("float8")),
    Quantizer(name="quanto-int4", backend="quanto", package="optimum.quanto", pip="optimum-quanto",
              how='QuantoConfig(weights_dtype="int4")', config=_quanto("int4")),
    Quantizer(name="gguf-q8_0", backend="gguf", package="gguf", pip="gguf", apply="gguf", gguf_type="Q8_0",
              how="a Q8_0 GGUF of the denoiser's weights, from_single_file(quantization_config="
                  "GGUFQuantizationConfig(compute_dtype=dtype))"),
    Quantizer(name="gguf-q4_0", backend="gguf", package="gguf", pip="gguf", apply="gguf", gguf_type="Q4_0",
              how="a Q4_0 GGUF of the denoiser's weights, read as gguf-q8_0 is"),
    Quantizer(name="gguf", backend="gguf", package="gguf", pip="gguf", apply="gguf",
              how="the user's .gguf denoiser file given as --model-path (with --model-config, the folder its "
                  "configs and the other parts come from), any GGUF type diffusers reads"),
    Quantizer(name="fp8-e4m3", backend="layerwise", apply="layerwise", storage=torch.float8_e4m3fn,
              how="enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype), "
                  "then the LoRA loaded"),
    Quantizer(name="fp8-e5m2", backend="layerwise", apply="layerwise", storage=torch.float8_e5m2,
              how="enable_layerwise_casting(storage_dtype=torch.float8_e5m2, compute_dtype=dtype), "
                  "then the LoRA loaded"),
)

NAMES: tuple[str, ...] = tuple(q.name for q in QUANTIZERS)
_BY_NAME = {q.name: q for q in QUANTIZERS}


def get_quantizer(name: str) -> Quantizer:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ParityInputError(f"unknown quantization {name!r}; choose from {', '.join(NAMES)}") from None


def require(name: str, device: str) -> Quantizer:
    """The quantizer, or one line saying why it cannot run on ``device`` here (bad input: exit 2)."""
    quantizer = get_quantizer(name)
    reason = quantizer.unavailable(device)
    if reason is not None:
        raise ParityInputError(reason)
    return quantizer


def quantizer_versions() -> dict[str, str]:
    """The installed versions of the quantizer packages (those not installed are left out): reports and
    golden manifests record them, so an upgrade of one shows beside what moved."""
    from importlib import metadata

    out = {}
    for dist in ("bitsandbytes", "torchao", "optimum-quanto", "gguf"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out
