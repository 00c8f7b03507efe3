"""The arithmetic floor of unfused LoRA: how many FLOPs a call costs, and how many LoRA adds.

An unfused LoRA on a Linear (in → out) adds, per input row, ``x @ Aᵀ`` (2·r·in) and ``· Bᵀ``
(2·r·out) beside the layer's own 2·in·out; on a Conv2d the down-projection is a conv with the
layer's kernel (2·r·in·k² per output position) and the up-projection a 1×1 conv (2·r·out); on a
Conv3d (Wan's patch embedding) likewise with its 3-d kernel. Rows are whatever the layer sees: a video
transformer's Linears see frames × (H/2) × (W/2) tokens after its 1×2×2 patch (tests/harness/
test_fullsize.py pins Wan 14B's at 720p). A fused LoRA adds nothing. The ratio (base + extra) / base is
the slowdown the arithmetic alone predicts; measured ratios beside it show what the LoRA layers'
overhead beyond arithmetic costs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from parity.lora.neutral import LoraModule
from parity.modules import lora_capable_modules


def counted_flops(call: Callable[[], object]) -> int:
    """FLOPs of one ``call`` as torch's FlopCounterMode counts them (matmuls, convs, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        call()
    return int(counter.get_total_flops())


def lora_layer_flops(module: nn.Module, rank: int, rows: int) -> int:
    """Extra FLOPs of one unfused rank-``rank`` LoRA on ``module`` for ``rows`` output rows/positions."""
    if isinstance(module, nn.Linear):
        return 2 * rows * rank * (module.in_features + module.out_features)
    if isinstance(module, nn.Conv2d | nn.Conv3d):
        kernel = math.prod(module.kernel_size)
        return 2 * rows * rank * (module.in_channels * kernel + module.out_channels)
    raise TypeError(f"no LoRA FLOP formula for {type(module).__name__}")


def lora_extra_flops(model: nn.Module, ranks: Mapping[str, Sequence[int]], call: Callable[[], object]) -> int:
    """Extra FLOPs that unfused LoRAs of ``ranks`` (module → one rank per adapter) add to one ``call``.

    ``call`` runs the base model. Rows are observed, not assumed: a forward hook on each targeted
    layer reads how many rows (Linear) or output positions (Conv2d) it saw, reshapes and repeated
    denoiser calls in a pipeline included.
    """
    layers = lora_capable_modules(model)
    missing = sorted(set(ranks) - set(layers))
    if missing:
        raise KeyError(f"LoRA modules not in the model: {', '.join(missing[:5])}")
    total = [0]

    def hook(name: str) -> Callable[..., None]:
        def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            channels = module.out_features if isinstance(module, nn.Linear) else module.out_channels
            # Linear: rows of any leading shape; Conv2d/Conv3d: output positions, channels first
            rows = output.numel() // channels
            total[0] += sum(lora_layer_flops(module, r, rows) for r in ranks[name])

        return count

    handles = [layers[name].register_forward_hook(hook(name)) for name in ranks]
    try:
        call()
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def adapter_ranks(loras: Iterable[LoraModule], rank: int | None = None) -> dict[str, list[int]]:
    """module → the rank of each adapter on it; ``rank`` replaces them all (hotswap padding)."""
    out: dict[str, list[int]] = {}
    for lora in loras:
        out.setdefault(lora.module, []).append(lora.rank if rank is None else rank)
    return out
