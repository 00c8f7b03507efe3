"""cloneofsimo ``lora_diffusion`` files: modules numbered, not named (``unet:0:up``, ``text_encoder:3:down``).

lora_diffusion/lora.py ``save_safeloras_with_embeds`` writes, per model it trained, the LoRA layers in the
order ``_find_modules`` (v2) finds them: every module whose class name is in the model's
``target_replace_module`` (the header keeps it: ``metadata[model] = json.dumps(list(...))``), in
``model.modules()`` order, then the ``nn.Linear`` (and, with ``ResnetBlock2D`` in the set, as
``inject_trainable_lora_extended`` targets, ``nn.Conv2d``) below each, in its ``named_modules()`` order.
``up`` is ``lora_up.weight * scale`` (``realize_as_lora``), so every module's scale is 1 (α = r). Learned
tokens are tensors under the token itself, flagged ``"<embed>"`` in the header: textual-inversion
embeddings, not LoRA layers.

So the numbering can be rebuilt from the model's own module tree; the reader then reads the file under
the names it rebuilds (``<model>.<module>.lora_down.weight``), checks every shape against the module, and
names the file's own keys in every message. What cannot be seen: a reordering among layers of one shape
(an attention's q, k, v) between the trainer's library versions and these; the count and every shape are
checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import torch
from torch import nn

from parity.errors import ParityInputError
from parity.modules import canonical_name

KEY = re.compile(r"^(?P<model>[A-Za-z_]\w*):(?P<index>\d+):(?P<role>up|down)$")
EMBED_FLAG = "<embed>"
CONV_ANCESTOR = "ResnetBlock2D"  # lora_diffusion's extended set: its injection also targets Conv2d
DESCRIPTION = "a cloneofsimo lora_diffusion file (keys 'unet:N:up')"


def is_numbered(keys: list[str]) -> bool:
    return any(KEY.match(k) for k in keys)


def numbered_layers(model: nn.Module, ancestors: list[str]) -> list[str]:
    """The module names lora_diffusion's ``_find_modules`` yields under ``ancestors``, in its order."""
    search = (nn.Linear, nn.Conv2d) if CONV_ANCESTOR in ancestors else (nn.Linear,)
    names = {id(m): n for n, m in model.named_modules()}
    out = []
    for ancestor in (m for m in model.modules() if type(m).__name__ in ancestors):
        out += [canonical_name(names[id(m)]) for _, m in ancestor.named_modules() if isinstance(m, search)]
    return out


def _ancestors(metadata: Mapping[str, str], model: str, path: str | None, key: str) -> list[str]:
    raw = metadata.get(model)
    try:
        classes = json.loads(raw) if raw is not None else None
    except (json.JSONDecodeError, RecursionError):
        classes = None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ParityInputError(f"{DESCRIPTION} without the header entry {model!r} (its target_replace_module "
                               "list): the modules are numbered, and the numbering cannot be rebuilt without it",
                               path=path, key=key)
    return classes


def renamed(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str], components: Mapping[str, nn.Module],
            path: str | None) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """(tensors under rebuilt names, rebuilt name → the file's key, the token embeddings' keys)."""
    out: dict[str, torch.Tensor] = {}
    original: dict[str, str] = {}
    embeddings = [k for k in tensors if metadata.get(k) == EMBED_FLAG]
    by_model: dict[str, dict[int, dict[str, str]]] = {}
    for key in tensors:
        m = KEY.match(key)
        if m is None:
            if key not in embeddings:
                out[key] = tensors[key]  # not this format's: the reader names it as a key that matches nothing
            continue
        by_model.setdefault(m["model"], {}).setdefault(int(m["index"]), {})[m["role"]] = key
    for model, entries in by_model.items():
        first = next(iter(next(iter(entries.values())).values()))
        if model not in components:
            out.update({k: tensors[k] for e in entries.values() for k in e.values()})  # the reader names them
            continue
        ancestors = _ancestors(metadata, model, path, first)
        layers = numbered_layers(components[model], ancestors)
        if sorted(entries) != list(range(len(layers))):
            raise ParityInputError(
                f"{DESCRIPTION}: its {model} layers are numbered 0..{max(entries)}, and lora_diffusion's order over "
                f"this {model}'s {', '.join(sorted(ancestors))} modules has {len(layers)} layers (0..{len(layers) - 1}):"
                " it was made for another model", path=path, key=first)
        for index, roles in sorted(entries.items()):
            for role, key in roles.items():
                name = f"{model}.{layers[index]}.lora_{role}.weight"
                out[name] = tensors[key]
                original[name] = key
    return out, original, embeddings
