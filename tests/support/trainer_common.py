"""What the trainer-style writers (tests/support/trainer_files.py, trainer_flux.py) share: the tiny
models walked as trainers walk them, deterministic factors, and the kohya key triple. Nothing here
comes from parity.lora, the code those files test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

RANK = 4
ALPHA = 2.0


# ---------------------------------------------------------------- the tiny models, walked


@cache
def tiny_components(family: str) -> dict[str, nn.Module]:
    """The family's tiny pipeline's LoRA-capable components (built once per process)."""
    from parity.zoo import FAMILIES

    fam = FAMILIES[family]
    return fam.components(fam.build_tiny(0))


def lora_layers(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of every Linear and Conv2d, in module-tree order."""
    for name, child in module.named_modules():
        if isinstance(child, (nn.Linear, nn.Conv2d)):
            yield name, child


def ends_with(name: str, *suffixes: str) -> bool:
    return any(name == s or name.endswith("." + s) for s in suffixes)


def clip_name(name: str) -> str:
    """The CLIP module name as trainers see it: transformers 5's CLIPTextModel has no ``text_model.``
    level in its module names, transformers 4's (which trained every published file) has."""
    return name if name.startswith("text_model.") else "text_model." + name


# ---------------------------------------------------------------- factors


@dataclass
class Factors:
    """Deterministic LoRA factors: one generator per file, drawn module after module."""

    seed: int
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        self.gen = torch.Generator().manual_seed(self.seed)

    def draw(self, shape_down: tuple[int, ...], shape_up: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        rank = shape_down[0]
        fan_in = 1
        for d in shape_down[1:]:
            fan_in *= d
        down = torch.randn(shape_down, generator=self.gen, dtype=torch.float64) * (1.0 / fan_in) ** 0.5
        up = torch.randn(shape_up, generator=self.gen, dtype=torch.float64) * (0.25 / rank) ** 0.5
        return down.to(self.dtype).contiguous(), up.to(self.dtype).contiguous()

    def for_module(self, module: nn.Module, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(down, up) for a Linear (r, in) / (out, r) or a Conv2d (r, in, k, k) / (out, r, 1, 1)."""
        w = module.weight
        if isinstance(module, nn.Conv2d):
            out_ch, in_ch, kh, kw = w.shape
            return self.draw((rank, in_ch, kh, kw), (out_ch, rank, 1, 1))
        out_f, in_f = w.shape
        return self.draw((rank, in_f), (out_f, rank))

    def for_shape(self, out_f: int, in_f: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.draw((rank, in_f), (out_f, rank))


Ranks = Callable[[int], tuple[int, float]]  # module index -> (rank, alpha)


def fixed_rank(_: int) -> tuple[int, float]:
    return RANK, ALPHA


def dynamic_rank(i: int) -> tuple[int, float]:
    """What kohya's resize_lora.py --dynamic_method writes: each module its own rank, and its alpha
    scaled with it (new_alpha = alpha * new_rank / rank)."""
    rank = (4, 1, 3, 2)[i % 4]
    return rank, ALPHA * rank / RANK


def kohya_entry(sd: dict[str, torch.Tensor], stem: str, down: torch.Tensor, up: torch.Tensor,
                alpha: float | None, sep: str = "") -> None:
    """``stem.lora_down.weight`` / ``stem.lora_up.weight`` / ``stem.alpha`` (a scalar in the factors' dtype)."""
    sd[f"{stem}.lora_down.weight"] = down
    sd[f"{stem}.lora_up.weight"] = up
    if alpha is not None:
        sd[f"{stem}.alpha"] = torch.tensor(alpha, dtype=down.dtype)


def save(sd: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    path = Path(path)
    save_file(sd, str(path), metadata=metadata)
    return path


CLIP_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def saved_by_diffusers(folder: Path, pipeline_class: str, model: nn.Module, targets: tuple[str, ...], seed: int,
                       name: str) -> Path:
    """``<pipeline_class>.save_lora_weights`` as diffusers' training scripts call it: PEFT's state dict of the
    transformer's Linears ending in a target (``….to_q.lora_A.weight``), the LoraConfig as
    ``transformer_lora_adapter_metadata`` (r, lora_alpha, target_modules)."""
    import diffusers

    factors = Factors(seed)
    layers: dict[str, torch.Tensor] = {}
    for mname, module in model.named_modules():
        if isinstance(module, nn.Linear) and ends_with(mname, *targets):
            layers[f"{mname}.lora_A.weight"], layers[f"{mname}.lora_B.weight"] = factors.for_module(module, RANK)
    config = {"r": RANK, "lora_alpha": ALPHA, "target_modules": list(targets), "lora_dropout": 0.0,
              "bias": "none", "use_dora": False, "use_rslora": False}
    getattr(diffusers, pipeline_class).save_lora_weights(str(folder), transformer_lora_layers=layers,
                                                         transformer_lora_adapter_metadata=config, weight_name=name)
    return Path(folder) / name
