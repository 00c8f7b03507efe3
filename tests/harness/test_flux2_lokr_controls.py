"""Negative control of FLUX2_LOKR_QKV_FUSED's evidence (tests/test_flux2_lokr.py): diffusers' fused to_qkv of an
ai-toolkit FLUX.2 LoKr file is base q|k|v + LyCORIS's kron(w1, w2) over the fused rows, and the same comparison
fails when the reference takes the factors in the other kron order (kron(w2, w1) has the same shape)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from tests.support import trainer_flux2
from tests.support.families import needs

pytestmark = needs("flux2-klein")

FAMILY = "flux2-klein"


def _fused_qkv(path: Path, swap: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(diffusers' fused to_qkv weight of block 0, base q|k|v + the reference ΔW, base q|k|v), float64; ``swap``:
    the reference's LoKr factors in the other kron order (the negative control)."""
    from parity.lora.neutral import RowsOf
    from parity.lora.reader import read_lora
    from parity.reference.variants import raw_delta
    from parity.zoo import FAMILIES

    fam = FAMILIES[FAMILY]
    pipe = fam.build_tiny(0)
    attn = pipe.transformer.transformer_blocks[0].attn
    base = torch.cat([getattr(attn, p).weight.detach().double() for p in ("to_q", "to_k", "to_v")])
    lora = read_lora(str(path), fam.components(pipe))
    whole = next(m.whole for (c, name), m in lora.modules.items()
                 if isinstance(m, RowsOf) and name == "transformer_blocks.0.attn.to_q")
    if swap:
        whole = dataclasses.replace(whole, w1=whole.w2, w2=whole.w1)
    delta = raw_delta(whole).reshape(base.shape)
    pipe.load_lora_weights(str(path))
    pipe.fuse_lora()
    return attn.to_qkv.weight.detach().double(), base + delta, base


def test_diffusers_fused_to_qkv_holds_the_reference_merge_and_a_swapped_kron_does_not(tmp_path):
    """The finding's other half: the merge lives in to_qkv, and it is LyCORIS's kron(w1, w2) over the fused rows
    (to float32 rounding); kron(w2, w1), the same shape, is far from it: the comparison tells them apart."""
    path = trainer_flux2.aitoolkit_flux2_lokr(tmp_path / "aitoolkit_flux2_lokr.safetensors")
    fused, ref, base = _fused_qkv(path, swap=False)
    size = (ref - base).abs().max()
    assert (fused - ref).abs().max() <= 1e-5 * size, float((fused - ref).abs().max() / size)
    fused, swapped, _ = _fused_qkv(path, swap=True)
    assert (fused - swapped).abs().max() > 0.1 * size
