"""The settled warm-up must not hide a recompile after it: a Z-Image whose RoPE cache changes dtype after
the warm-up recompiles at the next swap's call (a tensor guard), and the swap check reports it."""

from __future__ import annotations

import pytest
import torch

from parity.checks import hotswap as hs
from parity.checks.cases import HOTSWAP_TARGET_RANK
from parity.checks.dynamo import reset
from parity.checks.swaps import swap_and_check
from parity.lora.synth import write_lora
from parity.zoo import FAMILIES, build_pipeline

pytestmark = [pytest.mark.compile, pytest.mark.xdist_group("hotswap-warmup"),
              pytest.mark.skipif("zimage" not in FAMILIES, reason="this diffusers has no ZImagePipeline")]


def test_a_cache_changed_after_the_warm_up_is_a_recompile_the_swap_check_reports(tmp_path):
    fam = FAMILIES["zimage"]
    components = fam.components(build_pipeline(fam))
    targets = {fam.denoiser: fam.default_targets[fam.denoiser]}
    first, second = (write_lora(components, targets, tmp_path / f"{seed}.safetensors", seed=seed, rank=4, alpha=8.0)
                     for seed in (1, 2))
    try:
        session = hs.start(fam, first, HOTSWAP_TARGET_RANK)
        rope = session.denoiser.rope_embedder
        rope.freqs_cis = [f.to(torch.complex128) for f in rope.freqs_cis]
        record = swap_and_check(session, second, hs.parameter_footprint(session))
        assert record.recompiled and not record.ok
        assert any("freqs_cis" in failure for failure in record.failures), record.failures
    finally:
        reset()
