"""Full-size denoiser configs are the published ones: parameter counts as the model cards state them."""

from __future__ import annotations

import pytest
import torch

from parity.zoo.fullsize import FULL, SMALL

# Counts from the released checkpoints (exact for the UNets; the model cards round the transformers).
PUBLISHED = {
    "sd15": (859_520_964, 0),
    "sd2": (865_910_724, 0),  # 2.0 / 2.1, base and 768-v alike
    "sdxl": (2_567_463_684, 0),
    "flux": (11.9e9, 0.05e9),
    "qwenimage": (20.4e9, 0.05e9),
    "qwenimage-edit": (20.4e9, 0.05e9),  # Qwen-Image's transformer
}


@pytest.mark.parametrize("family", sorted(FULL))
def test_full_size_denoiser_has_the_published_parameter_count(family: str) -> None:
    with torch.device("meta"):
        model = FULL[family].build(None)
    count, slack = PUBLISHED[family]
    assert abs(sum(p.numel() for p in model.parameters()) - count) <= slack


def test_fewer_blocks_shrink_a_transformer_but_keep_its_block_shapes() -> None:
    with torch.device("meta"):
        full, small = FULL["flux"].build(None), FULL["flux"].build(2)
    assert len(small.transformer_blocks) == 2 and len(small.single_transformer_blocks) == 4
    shapes = lambda m: {n: p.shape for n, p in m.transformer_blocks[0].named_parameters()}  # noqa: E731
    assert shapes(small) == shapes(full)


@pytest.mark.slow
def test_full_size_sd15_subject_runs_one_forward_at_its_native_shape(tmp_path) -> None:
    from parity.bench.modes import build_subject
    from parity.zoo import get_family

    subject = build_subject(get_family("sd15"), "full", torch.float32, "cpu", str(tmp_path))
    out = subject.forward()
    assert out.shape == (1, 4, 64, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize("family", sorted(SMALL))
def test_small_size_keeps_the_published_layer_widths_in_few_layers(family: str) -> None:
    """--bench-size small: every Linear of the small denoiser has a published one's shape, with far
    fewer of them (the point of the size: full-width arithmetic, seconds per round on one core)."""
    with torch.device("meta"):
        full, small = FULL[family].build(None), SMALL[family].build(None)
    shapes = lambda m: {tuple(x.weight.shape) for x in m.modules() if isinstance(x, torch.nn.Linear)}  # noqa: E731
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert shapes(small) <= shapes(full)
    assert count(small) < 0.7 * count(full)
