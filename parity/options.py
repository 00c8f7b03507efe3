"""The options the CLI and the pytest plugin both take, declared once: the same flag, metavar, help and
meaning on both front ends. Each front end still adds them where they belong (an argparse parser, or
the plugin module that owns the option); both validate them through the same function
(parity.devices.resolve, parity.checks.dynamo.compile_options)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Option:
    flag: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def add_to(self, parser: Any, **overrides: Any) -> None:
        """Add to an argparse parser (``add_argument``) or a pytest option group (``addoption``)."""
        add = getattr(parser, "add_argument", None) or parser.addoption
        add(self.flag, **{**self.kwargs, **overrides})


MODEL_PATH = Option("--model-path", dict(
    metavar="PATH", default=None,
    help="local diffusers pipeline folder (a Hub snapshot too) or single-file .safetensors checkpoint; default: "
         "the family's tiny deterministic model"))
VARIANT = Option("--variant", dict(
    metavar="V", default=None,
    help="with a --model-path folder: load its *.V.safetensors weights (e.g. fp16), as from_pretrained(variant=V)"))
MODEL_CONFIG = Option("--model-config", dict(
    metavar="DIR", default=None,
    help="with a single-file --model-path: the diffusers folder whose configs describe it (default: the "
         "family's tiny or published configs, whichever the file's shapes fit)"))
EXPERT = Option("--expert", dict(
    choices=("high", "low", "both"), default=None,
    help="Wan 2.2: the expert the --lora files go into: high (transformer, as load_lora_weights does by default), "
         "low (transformer_2: load_into_transformer_2=True) or both (default: what each file's name or metadata "
         "says, else high)"))
ALLOW_PICKLE = Option("--allow-pickle", dict(
    action="store_true", default=False,
    help="read .bin/.pt/.pth/.ckpt LoRA files with torch.load(weights_only=True) (default: refuse them)"))
DEVICE = Option("--device", dict(
    default="cpu", help="cpu, cuda or auto (default: cpu)"))
COMPILE_BACKEND = Option("--compile-backend", dict(
    metavar="B", default=None, help="eager, aot_eager or inductor (default: eager on cpu, inductor on cuda)"))
COMPILE_MODE = Option("--compile-mode", dict(
    metavar="M", default=None, help="torch.compile mode, inductor only (default: none)"))
GOLDEN_CLASS = Option("--golden-class", dict(
    metavar="CLASS", default=None, help="device class folder (default: this device's, e.g. cpu or cuda-sm90)"))


def _quantization_option() -> Option:
    from parity.quant.registry import QUANTIZERS

    listed = "; ".join(f"{q.name}: {q.how}" for q in QUANTIZERS)
    return Option("--quantization", dict(
        metavar="NAME", default=None, choices=[q.name for q in QUANTIZERS],
        help=f"quantize the denoiser as users do, then check the LoRA on it (default: none). Choices: {listed}"))


QUANTIZATION = _quantization_option()
