"""Which model family a LoRA file looks made for: from key signatures, and where the keys are the same
(SD1.5 and SD2.x name every module alike) from the widths its tensors carry.

Used only to word an error about a file that does not fit the model it is checked against, so it
must never claim more than the file shows: a family is named on a key fragment no other zoo family's
LoRAs carry, or on a width its cross-attention (or text encoder) has and the model checked against
has not; the fragment or the width is quoted as the evidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from parity.errors import ParityInputError
from parity.lora.keys import DENOISER, parse_key

# (fragment, family): first match wins. Order matters where fragments nest: Flux's single blocks
# are checked before anything generic. SD1.5 has no fragment of its own (every SD1.5 key also
# fits SDXL's unet), so it is never guessed.
SIGNATURES: tuple[tuple[str, str], ...] = (
    # FLUX.2 (diffusers' and BFL's names of what FLUX.1 has not) before FLUX.1's single_transformer_blocks
    ("double_stream_modulation", "flux2"),
    ("single_stream_modulation", "flux2"),
    ("to_qkv_mlp_proj", "flux2"),
    ("time_guidance_embed", "flux2"),
    ("ff.linear_in", "flux2"),
    ("ff_linear_in", "flux2"),
    ("text_encoder_2.", "sdxl"),
    ("lora_te2_", "sdxl"),
    ("single_transformer_blocks", "flux"),
    ("lora_transformer_single_transformer_blocks", "flux"),
    # FLUX.1's BFL names (kohya, ComfyUI) carry img_mlp too: they say flux before img_mlp says qwenimage
    ("double_blocks", "flux"),
    ("single_blocks", "flux"),
    # Wan: its original names (a CLIP self_attn.q_proj does not match with the dot) and diffusers' ffn.net
    ("self_attn.q.", "wan"),
    ("self_attn_q.", "wan"),
    ("ffn.net.", "wan"),
    ("ffn_net_", "wan"),
    # Z-Image: its refiners and SwiGLU feed-forward (diffusers' and ComfyUI's names), ComfyUI's fused qkv
    ("noise_refiner", "zimage"),
    ("context_refiner", "zimage"),
    ("feed_forward.w", "zimage"),
    ("feed_forward_w", "zimage"),
    ("attention.qkv", "zimage"),
    ("attention_qkv", "zimage"),
    ("img_mlp", "qwenimage"),
    ("txt_mlp", "qwenimage"),
)


def guess_family(keys: Iterable[str]) -> tuple[str, str] | None:
    """(family, the key fragment that says so), or None when no key carries a signature."""
    keys = list(keys)
    for fragment, family in SIGNATURES:
        if any(fragment in key for key in keys):
            return family, fragment
    return None


def describe_guess(keys: Iterable[str], tensors: Mapping[str, torch.Tensor] | None = None,
                   components: Mapping[str, nn.Module] | None = None) -> str:
    """A clause for an error message: '; the keys look like a LoRA made for sdxl ('text_encoder_2.' keys);
    try --family sdxl', else (given the file's tensors and the model's components) the width guess,
    '; cross-attention width 1024: an SD 2.x file; try --family sd2', or ''."""
    keys = list(keys)
    guess = guess_family(keys)
    if guess is None:
        return describe_width_guess(tensors, components) if tensors is not None and components else ""
    family, fragment = guess
    if family == "flux" and tensors is not None and (ratio := bfl_mlp_ratio(tensors)) == FLUX2_MLP_RATIO:
        # BFL names FLUX.1's and FLUX.2's blocks alike; FLUX.2's feed-forward is 3x wide, FLUX.1's 4x
        return (f"; the keys look like a LoRA made for flux2 ({fragment!r} keys, img_mlp.2 {ratio}x as wide as "
                "img_mlp.0's input: FLUX.2's feed-forward; FLUX.1's is 4x); try --family flux2 or flux2-klein")
    return f"; the keys look like a LoRA made for {family} ({fragment!r} keys); try --family {family}"


FLUX2_MLP_RATIO = 3  # FLUX.2's mlp_ratio (black-forest-labs/flux2 Flux2Params), FLUX.1's is 4
_MLP = re.compile(r"img_mlp[._]([02])$")


def bfl_mlp_ratio(tensors: Mapping[str, torch.Tensor]) -> int | None:
    """A BFL double block's feed-forward width over the model width: the input width of img_mlp.2's down
    factor over img_mlp.0's (both files' own tensors), or None where the file has not both."""
    widths: dict[str, int] = {}
    for key, t in tensors.items():
        parsed = parse_key(key)
        if parsed is not None and parsed.role == "down" and t.ndim == 2 and (m := _MLP.search(parsed.body)):
            widths.setdefault(m[1], int(t.shape[1]))
    if {"0", "2"} <= set(widths) and widths["2"] % widths["0"] == 0:
        return widths["2"] // widths["0"]
    return None


# What a cross-attention width (the input width of the UNet's attn2.to_k / to_v) says, at published size
# and on the tiny zoo (SDXL's UNet attends to its two encoders concatenated). Each is one family's
# alone, so a width names it. The tiny widths are the zoo's TEXT_DIMs, written out (lora reads no zoo
# family: data flows zoo -> lora); tests/harness/test_family_guess.py holds them equal.
TINY_SD15, TINY_SD2, TINY_SDXL = 16, 24, 32
CROSS_ATTENTION: dict[int, tuple[str, str]] = {
    768: ("sd15", "an SD 1.x file"),
    1024: ("sd2", "an SD 2.x file"),
    2048: ("sdxl", "an SDXL file"),
    TINY_SD15: ("sd15", "a file for the tiny sd15 model"),
    TINY_SD2: ("sd2", "a file for the tiny sd2 model"),
    TINY_SDXL: ("sdxl", "a file for the tiny sdxl model"),
}
# What the hidden size of ``text_encoder`` (its q_proj's input width) says. CLIP ViT-L's 768 is also
# SDXL's and FLUX.1's first text encoder (16 on the tiny zoo), so the wording says so; their files carry
# keys of their own (text_encoder_2, transformer), guessed from the keys first.
TEXT_ENCODER: dict[int, tuple[str, str]] = {
    768: ("sd15", "CLIP ViT-L's, an SD 1.x file (or SDXL's or FLUX.1's first text encoder)"),
    1024: ("sd2", "OpenCLIP ViT-H's, an SD 2.x file"),
    TINY_SD15: ("sd15", "a file for the tiny sd15 model (or the first text encoder of the tiny sdxl or flux)"),
    TINY_SD2: ("sd2", "a file for the tiny sd2 model"),
}
_CROSS = re.compile(r"attn2[._](processor[._])?to_[kv]")
_TEXT_Q = re.compile(r"self_attn[._]q_proj")


def _file_width(tensors: Mapping[str, torch.Tensor], component: str, pattern: re.Pattern) -> int | None:
    """The input width of the first 2-d down factor of ``component`` whose module name matches."""
    for key, t in tensors.items():
        parsed = parse_key(key)
        if parsed is None or parsed.role != "down" or t.ndim != 2 or not pattern.search(parsed.body):
            continue
        if parsed.prefix.component == component or (component == "unet" and parsed.prefix.component == DENOISER):
            return int(t.shape[1])
    return None


def _model_width(components: Mapping[str, nn.Module], component: str, pattern: re.Pattern) -> int | None:
    module = components.get(component)
    if module is None:
        return None
    for name, child in module.named_modules():
        if isinstance(child, nn.Linear) and pattern.search(name):
            return int(child.weight.shape[1])
    return None


def width_guess(tensors: Mapping[str, torch.Tensor], components: Mapping[str, nn.Module]) -> tuple[str, str] | None:
    """(family, the evidence) when the file's cross-attention or text-encoder width is another family's
    and not the model's; None when it is the model's, or no family's."""
    for component, pattern, table, what in (("unet", _CROSS, CROSS_ATTENTION, "cross-attention width"),
                                             ("text_encoder", _TEXT_Q, TEXT_ENCODER, "text encoder width")):
        have = _file_width(tensors, component, pattern)
        if have is None or have == _model_width(components, component, pattern) or have not in table:
            continue
        family, said = table[have]
        return family, f"{what} {have}: {said}"
    return None


def describe_width_guess(tensors: Mapping[str, torch.Tensor], components: Mapping[str, nn.Module]) -> str:
    """'; cross-attention width 1024: an SD 2.x file; try --family sd2', or ''."""
    guess = width_guess(tensors, components)
    return "" if guess is None else f"; {guess[1]}; try --family {guess[0]}"


def with_guess(exc: ParityInputError, keys: Iterable[str], tensors: Mapping[str, torch.Tensor],
               components: Mapping[str, nn.Module]) -> ParityInputError:
    """``exc`` with the guess appended (a shape that does not fit, from a file made for another family),
    or ``exc`` itself when the file shows no other family."""
    guess = describe_guess(keys, tensors, components)
    return exc if not guess else ParityInputError(exc.message + guess, path=exc.path, key=exc.key)
