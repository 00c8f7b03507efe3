"""A compiled model that recompiles at its second call with no LoRA (Z-Image: RopeEmbedder fills its
``freqs_cis`` cache on the first call, guarded ``self.freqs_cis is None``) is settled before the swaps
are watched, the warm-up recompile is recorded on the session, and the swaps after it compile nothing."""

from __future__ import annotations

import pytest

from parity.checks import hotswap as hs
from parity.checks.cases import HOTSWAP_TARGET_RANK
from parity.checks.dynamo import reset, watch_compiles
from parity.lora.synth import write_lora
from parity.zoo import FAMILIES, build_pipeline

pytestmark = [pytest.mark.compile, pytest.mark.xdist_group("hotswap-warmup")]


def _files(family: str, tmp_path) -> list[str]:
    fam = FAMILIES[family]
    components = fam.components(build_pipeline(fam))
    targets = {fam.denoiser: fam.default_targets[fam.denoiser]}
    return [write_lora(components, targets, tmp_path / f"{family}-{seed}.safetensors", seed=seed, rank=4, alpha=8.0)
            for seed in (1, 2)]


@pytest.mark.skipif("zimage" not in FAMILIES, reason="this diffusers has no ZImagePipeline")
def test_zimage_recompiles_once_before_any_swap_and_never_on_the_swap(tmp_path):
    first, second = _files("zimage", tmp_path)
    try:
        session = hs.start("zimage", first, HOTSWAP_TARGET_RANK)
        assert any("freqs_cis" in reason for reason in session.warmup_recompiles), session.warmup_recompiles
        with watch_compiles() as watch:
            hs.swap(session, second)
        assert not watch.recompiled, watch.summary()
    finally:
        reset()


def test_a_model_with_no_first_call_cache_records_no_warmup_recompile(tmp_path):
    first, _ = _files("flux", tmp_path)
    try:
        assert hs.start("flux", first, HOTSWAP_TARGET_RANK).warmup_recompiles == []
    finally:
        reset()
