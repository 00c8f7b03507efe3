"""diffusers' own module names, as every layout on diffusers names spells them.

Besides the plain name: the CLIP text encoders with and without transformers' ``text_model.`` level
(transformers 5 builds CLIPTextModel without it, every published file has it), and diffusers' legacy
attention-processor names (``attn1.processor.to_q``, ``processor.to_out`` for ``to_out.0``) that its
training scripts wrote before PEFT.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from parity.lora.names import Target, whole

TEXT_MODEL_PREFIX = "text_model."
ATTENTION_PROJECTIONS = {"to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "to_out.0": "to_out",
                         "add_q_proj": "add_q_proj", "add_k_proj": "add_k_proj", "add_v_proj": "add_v_proj",
                         "to_add_out": "to_add_out"}


def diffusers_names(component: str, modules: Mapping[str, nn.Module]) -> dict[str, Target]:
    out: dict[str, Target] = {}
    for name in modules:
        target = whole(modules, name)
        out[name] = target
        if component.startswith("text_encoder"):
            out[TEXT_MODEL_PREFIX + name.removeprefix(TEXT_MODEL_PREFIX)] = target
            out[name.removeprefix(TEXT_MODEL_PREFIX)] = target
    return out


def legacy_names(component: str, modules: Mapping[str, nn.Module]) -> dict[str, Target]:
    """``<attention>.processor.<projection>``, the names of diffusers' LoRAAttnProcessor era."""
    out: dict[str, Target] = {}
    for name in modules:
        for projection, legacy in ATTENTION_PROJECTIONS.items():
            if name.endswith("." + projection):
                attention = name[: -len(projection) - 1]
                out[f"{attention}.processor.{legacy}"] = whole(modules, name)
                break
    return out
