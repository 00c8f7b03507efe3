"""LoRA files in two legacy layouts, written the way their own trainers saved them, for the tiny SD1.5 model.
Nothing here comes from parity.lora, the code these files test.

* diffusers <= 0.14 ``unet.save_attn_procs(dir)`` (train_dreambooth_lora.py / train_text_to_image_lora.py of
  that era): ``AttnProcsLayers`` holds one ``LoRACrossAttnProcessor`` per attention, and its state-dict hook
  renames ``layers.N.`` back to the processor's name, so a key is the attention's module name,
  ``.processor.``, then ``to_q_lora`` / ``to_k_lora`` / ``to_v_lora`` / ``to_out_lora`` and
  ``.down.weight`` (r, in) / ``.up.weight`` (out, r): no ``unet.`` prefix, no alpha (the layer adds
  ``up(down(x))``, scale 1), the UNet only. Saved as ``pytorch_lora_weights.bin`` (or ``.safetensors``).
* cloneofsimo ``lora_diffusion`` (github cloneofsimo/lora, lora_diffusion/lora.py ``save_safeloras_with_embeds``):
  for each model, ``inject_trainable_lora`` replaced every ``nn.Linear`` found under a module whose class name
  is in ``target_replace_module`` (``_find_modules``: ``model.modules()`` for the ancestors, then each one's
  ``named_modules()``, in order); ``extract_lora_ups_down`` lists the injected layers in that same order and
  the file numbers them: ``unet:0:up``, ``unet:0:down``… (up (out, r) with the scale baked in, down (r, in));
  the header metadata maps each model name to ``json.dumps(list(target_replace_module))``, ``<model>:<i>:rank``
  to the rank, and each learned token (``<s1>``) to ``"<embed>"``, whose embedding is a tensor under the
  token itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from tests.support.trainer_common import RANK, Factors, save, tiny_components

PROCESSOR_PROJECTIONS = {"to_q": "to_q_lora", "to_k": "to_k_lora", "to_v": "to_v_lora", "to_out.0": "to_out_lora"}


def attn_procs_014(path: Path, *, seed: int = 41, prefix: str = "", dtype: torch.dtype = torch.float32) -> Path:
    """diffusers <= 0.14 ``save_attn_procs``: every attention of the UNet, keys without a prefix (``prefix``
    ``"unet."``: the same pairs as diffusers 0.15+'s ``save_lora_weights`` prefixed them)."""
    unet = tiny_components("sd15")["unet"]
    factors = Factors(seed, dtype)
    sd: dict[str, torch.Tensor] = {}
    for name, module in unet.named_modules():
        if type(module).__name__ not in ("Attention", "CrossAttention"):
            continue
        for projection, lora in PROCESSOR_PROJECTIONS.items():
            linear = module.get_submodule(projection)
            down, up = factors.for_shape(linear.out_features, linear.in_features, RANK)
            sd[f"{prefix}{name}.processor.{lora}.down.weight"] = down
            sd[f"{prefix}{name}.processor.{lora}.up.weight"] = up
    return save(sd, path)


# lora_diffusion/lora.py: DEFAULT_TARGET_REPLACE = {"CrossAttention", "Attention", "GEGLU"},
# TEXT_ENCODER_DEFAULT_TARGET_REPLACE = {"CLIPAttention"}
UNET_REPLACE = ["CrossAttention", "Attention", "GEGLU"]
TEXT_ENCODER_REPLACE = ["CLIPAttention"]


def find_linears(model: nn.Module, ancestor_class: list[str]) -> list[nn.Linear]:
    """lora_diffusion's ``_find_modules(model, ancestor_class, search_class=[nn.Linear])``, in its order."""
    out = []
    for ancestor in (m for m in model.modules() if m.__class__.__name__ in ancestor_class):
        for _, module in ancestor.named_modules():
            if isinstance(module, nn.Linear):
                out.append(module)
    return out


def cloneofsimo(path: Path, *, seed: int = 43, text_encoder: bool = True, token: str | None = "<s1>",
                rank: int = RANK, drop_last: bool = False, swap: tuple[int, int] | None = None,
                header: bool = True, dtype: torch.dtype = torch.float16) -> Path:
    """``save_safeloras_with_embeds({"unet": (unet, UNET_REPLACE), "text_encoder": (te, TE_REPLACE)},
    embeds={token: vector})``, factors in float16 as ``extract_lora_as_tensor(as_fp16=True)`` stores them.
    For the controls: ``drop_last`` leaves out the UNet's last layer (a file from a model with one layer
    fewer), ``swap`` exchanges two UNet numbers (another library's module order), ``header`` False drops
    the metadata."""
    comps = tiny_components("sd15")
    factors = Factors(seed, dtype)
    weights: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    models = {"unet": (comps["unet"], UNET_REPLACE)}
    if text_encoder:
        models["text_encoder"] = (comps["text_encoder"], TEXT_ENCODER_REPLACE)
    for name, (model, replace) in models.items():
        metadata[name] = json.dumps(replace)
        linears = find_linears(model, replace)
        if drop_last and name == "unet":
            linears = linears[:-1]
        if swap is not None and name == "unet":
            a, b = swap
            linears[a], linears[b] = linears[b], linears[a]
        for i, linear in enumerate(linears):
            down, up = factors.for_shape(linear.out_features, linear.in_features, rank)
            metadata[f"{name}:{i}:rank"] = str(rank)
            weights[f"{name}:{i}:up"] = up
            weights[f"{name}:{i}:down"] = down
    if token is not None:
        metadata[token] = "<embed>"
        width = comps["text_encoder"].get_input_embeddings().weight.shape[1]
        weights[token] = factors.draw((1, width), (1, 1))[0][0]
    return save(weights, path, metadata if header else None)
