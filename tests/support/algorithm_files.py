"""The algorithm files tests/test_lycoris_files.py checks (DoRA, LoHa, LoKr, tucker), written the way LyCORIS and
PEFT write them by tests/support/trainer_lycoris.py, on the modules each family's trainers reach. Shared with
tests/harness/test_algorithm_files.py, which holds parity.lora.algorithms' own files (the matrix's) against
these: tests import support code, never each other."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.support.trainer_common import tiny_components
from tests.support.trainer_files import sgm_block_map, sgm_name
from tests.support.trainer_lycoris import lycoris_state_dict, peft_dora_state_dict, save

# The modules each family's files reach (diffusers names): attention Linears, a 1×1 and a 3×3 conv
# where the family has them (tucker needs a k×k kernel).
MODULES = {
    "sd15": ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
             "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
             "down_blocks.1.attentions.0.proj_in", "down_blocks.1.resnets.0.conv1"),
    # SD 2.x: proj_in is a Linear (use_linear_projection)
    "sd2": ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
            "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k",
            "down_blocks.1.attentions.0.proj_in", "down_blocks.1.resnets.0.conv1"),
    "sdxl": ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
             "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v",
             "down_blocks.1.resnets.0.conv1"),
    "flux": ("transformer_blocks.0.ff.net.0.proj", "transformer_blocks.0.attn.to_out.0",
             "single_transformer_blocks.0.proj_out"),
    "qwenimage": ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.img_mlp.net.2", "img_in"),
}
# kohya sd-scripts' lora_flux.py names (BFL) for the FLUX.1 modules above, whole (not fused) targets
BFL = {"transformer_blocks.0.ff.net.0.proj": "double_blocks.0.img_mlp.0",
       "transformer_blocks.0.attn.to_out.0": "double_blocks.0.img_attn.proj",
       "single_transformer_blocks.0.proj_out": "single_blocks.0.linear2"}

# file kind → how LyCORIS writes it (lycoris_state_dict's arguments); "peft-dora" is PEFT's own format
FILES = {
    "lycoris-dora": dict(algo="locon", dora=True),
    "lycoris-dora-input-axis": dict(algo="locon", dora=True, wd_on_out=False),
    "locon-tucker": dict(algo="locon", tucker=True),
    "loha": dict(algo="loha"),
    "loha-tucker": dict(algo="loha", tucker=True),
    "loha-dora": dict(algo="loha", dora=True),
    "lokr": dict(algo="lokr"),
    "lokr-tucker": dict(algo="lokr", tucker=True),
    "peft-dora": {},
}


def _stem(family: str, name: str, unet: torch.nn.Module) -> str:
    """The module's name as kohya-style trainers write it for this family (without lora_unet_)."""
    if family == "sdxl":
        return sgm_name(name, sgm_block_map(unet)).replace(".", "_")
    if family == "flux":
        return BFL[name].replace(".", "_")
    return name.replace(".", "_")


def write_file(family: str, kind: str, folder: Path) -> Path:
    components = tiny_components(family)
    component = "unet" if "unet" in components else "transformer"
    model = components[component]
    layers = dict(model.named_modules())
    tucker = FILES[kind].get("tucker", False)
    names = [n for n in MODULES[family] if not tucker or layers[n].weight.shape[2:] == (3, 3)] if tucker \
        else list(MODULES[family])
    if kind == "peft-dora":
        shapes = {n: tuple(layers[n].weight.shape) for n in names}
        base = {n: layers[n].weight.detach().clone() for n in names}
        sd = peft_dora_state_dict(shapes, component=component, rank=2, base=base)
    else:
        stems = {n: _stem(family, n, model) for n in names}
        shapes = {stems[n]: tuple(layers[n].weight.shape) for n in names}
        base = {stems[n]: layers[n].weight.detach().clone() for n in names}
        sd = lycoris_state_dict(shapes, rank=2, base=base, **FILES[kind])
    return Path(save(sd, str(folder / f"{family}-{kind}.safetensors")))
