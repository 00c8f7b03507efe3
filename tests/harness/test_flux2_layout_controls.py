"""Negative controls for FLUX.2's BFL names (parity/lora/names/flux2.py): the merge check must catch a fused
img_attn.qkv split at the wrong widths, and it fails a final modulation whose shift|scale halves reach
diffusers unswapped, while the same LoRA with its halves put in diffusers' order passes (so the finding
FLUX2_FINAL_MODULATION_NOT_SWAPPED is the swap and nothing else).

The file is ai-toolkit's (diffusion_model. + BFL names, lora_A/lora_B), which diffusers splits right on the
tiny klein model (the first test), so a failure below is the control's.
"""

from __future__ import annotations

import torch

from parity.checks.cases import LayoutCase, LoraSpec
from parity.checks.fuse import fuse_and_measure, load_files
from parity.checks.prepare import prepare
from parity.lora.names import Piece, Target, bfl
from parity.lora.reader import read_lora
from parity.lora.tensors import load_tensors
from parity.zoo import get_family
from tests.support.families import needs

pytestmark = needs("flux2-klein")

SPEC = (LoraSpec(seed=1, rank=4, alpha=2.0),)
FAMILY = "flux2-klein"


def _fused(prep, loras, source=None):
    loaded = load_files(prep.pipe, get_family(FAMILY), [source or prep.loras[0]], [1.0])
    result = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, loras, [1.0], 1.0)
    loaded.pipe.unfuse_lora()
    loaded.pipe.unload_lora_weights()  # the next load in the test reuses the adapter name
    return result


def test_qkv_split_eight_rows_off_fails_naming_the_split(tmp_path, monkeypatch):
    prep = prepare(LayoutCase(FAMILY, "aitoolkit-flux2"), SPEC, "float32", "cpu", str(tmp_path))
    assert _fused(prep, prep.loras).ok  # untouched, the file passes

    real = bfl.fused

    def late(modules, names):  # every part read 8 rows late, the last part's first 8 rows wrapped round
        target = real(modules, names)
        total, pieces = target.rows, []
        for p in target.pieces:
            start = (p.start + 8) % total
            head = min(p.size, total - start)
            pieces.append(Piece(p.module, start, head, p.at))
            if head < p.size:
                pieces.append(Piece(p.module, 0, p.size - head, p.at + head))
        return Target(tuple(pieces))

    monkeypatch.setattr(bfl, "fused", late)
    wrong = read_lora(prep.paths[0], prep.components)
    monkeypatch.undo()

    result = _fused(prep, [wrong])
    text = "\n".join(result.failures(limit=50))
    assert not result.ok and "transformer_blocks.0.attn.to_q.weight" in text and "add_k_proj" in text, text


def test_final_modulation_fails_unswapped_and_passes_swapped_into_diffusers_order(tmp_path):
    prep = prepare(LayoutCase(FAMILY, "aitoolkit-flux2", "final-modulation"), SPEC, "float32", "cpu", str(tmp_path))

    as_published = _fused(prep, prep.loras)
    [report] = [r for r in as_published.reports if not r.ok]
    assert report.name.endswith("norm_out.linear.weight") and "halves are swapped" in report.diagnosis

    tensors, _ = load_tensors(prep.paths[0])
    key = "diffusion_model.final_layer.adaLN_modulation.1.lora_B.weight"
    up = tensors[key]
    half = up.shape[0] // 2
    given = {**tensors, key: torch.cat([up[half:], up[:half]])}  # scale|shift, as diffusers' norm_out takes it
    swapped = read_lora(given, prep.components)
    swapped.raw = given  # what diffusers is handed

    result = _fused(prep, prep.loras, source=swapped)
    assert result.ok, result.failures()
