"""Property tests: one PEFT LoRA layer, random shapes/rank/alpha/scale/dtype, merged by PEFT itself."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

from parity.lora.neutral import LoraFile, LoraModule
from parity.reference.merge import reference_merge
from parity.tolerances import FLOAT_DTYPES, merge_bound, report_against_bound, tolerance
from parity.zoo.weights import deterministic_tensor

LAYERS = st.sampled_from(["linear", "conv1x1", "conv3x3"])
DTYPE_NAMES = st.sampled_from(sorted(FLOAT_DTYPES))


class Holder(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer


def build(kind: str, fan_in: int, fan_out: int, rank: int, alpha: float, seed: int, dtype: torch.dtype):
    """A base layer with deterministic weights and a PEFT adapter holding our own A and B."""
    kernel = {"linear": (), "conv1x1": (1, 1), "conv3x3": (3, 3)}[kind]
    layer = nn.Linear(fan_in, fan_out) if kind == "linear" else nn.Conv2d(fan_in, fan_out, kernel, padding="same")
    with torch.no_grad():
        layer.weight.copy_(deterministic_tensor(seed, "w", tuple(layer.weight.shape), fan_in**-0.5))
    model = Holder(layer).to(dtype)
    down = deterministic_tensor(seed, "a", (rank, fan_in, *kernel), fan_in**-0.5)
    up = deterministic_tensor(seed, "b", (fan_out, rank, *(1,) * len(kernel)), 0.5 * rank**-0.5)
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=["layer"]), model)
    with torch.no_grad():
        model.layer.lora_A["default"].weight.copy_(down)
        model.layer.lora_B["default"].weight.copy_(up)
    return model, LoraModule("m", "layer", down, up, alpha)


@settings(max_examples=60, deadline=None)
@given(
    kind=LAYERS,
    fan_in=st.integers(1, 48),
    fan_out=st.integers(1, 48),
    rank=st.integers(1, 16),
    alpha=st.floats(0.25, 64, allow_nan=False, width=32),
    scale=st.floats(-2, 2, allow_nan=False, width=32),
    dtype_name=DTYPE_NAMES,
    seed=st.integers(0, 2**16),
)
def test_peft_merge_matches_reference_merge(kind, fan_in, fan_out, rank, alpha, scale, dtype_name, seed):
    dtype = FLOAT_DTYPES[dtype_name]
    model, lora = build(kind, fan_in, fan_out, rank, alpha, seed, dtype)
    base = {"m": {"layer.weight": model.layer.base_layer.weight.detach().clone()}}

    model.layer.scale_layer(scale)
    model.layer.merge()

    ref = reference_merge(base, [(LoraFile({("m", "layer"): lora}, "synthetic"), 1.0)], scale)[("m", "layer")]
    bound = merge_bound(ref.steps, ref.base, dtype, tolerance("merge", "cpu", dtype))
    report = report_against_bound("layer", model.layer.base_layer.weight, ref.merged, bound, dtype)
    assert report.ok, report


@settings(max_examples=30, deadline=None)
@given(kind=LAYERS, rank=st.integers(1, 16), dtype_name=DTYPE_NAMES, seed=st.integers(0, 2**16))
def test_merge_at_scale_zero_is_the_base(kind, rank, dtype_name, seed):
    model, _ = build(kind, 12, 20, rank, float(rank), seed, FLOAT_DTYPES[dtype_name])
    before = model.layer.base_layer.weight.detach().clone()

    model.layer.scale_layer(0.0)
    model.layer.merge()

    assert torch.equal(model.layer.base_layer.weight, before)
