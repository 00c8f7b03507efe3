"""Our own dequantization of every quantized weight type a denoiser can hold, in float64, and the
quantization step of each element: the reference of the quantized check starts from these, never from
PEFT's ``dequantize_bnb_weight`` or diffusers' GGUF kernels.

Per type, from the tensor's stored fields:
  torchao Int8Tensor / Float8Tensor   qdata · scale (scale per row, or per block, broadcast)
  quanto WeightQBytesTensor           _data · _scale (int8 or float8, per output row)
  quanto WeightQBitsTensor            its own ``dequantize()`` (packed 4/2-bit groups with a shift)
  diffusers GGUFParameter             gguf-py's dequantize of the packed bytes (parity/quant/gguf_file.py)
  bitsandbytes Int8Params             CB · SCB / 127
  bitsandbytes Params4bit             bitsandbytes' dequantize_4bit (a codebook lookup per 64-block)
  a float8 weight (layerwise casting) the value itself

The step is what one rounding to the quantizer's grid can move an element by, times two: the gap
between neighbouring grid points at that element (int8: the row's scale; float8: the scale times
float8's spacing at the value; a 4-bit codebook: the block's absmax times the widest codebook gap).
A round-to-nearest moves an element by at most half its step (parity/tolerances.py: QUANT_TOLERANCES).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

FLOAT8 = {torch.float8_e4m3fn: (3, -6), torch.float8_e5m2: (2, -14)}  # mantissa bits, smallest normal exponent


@dataclass(frozen=True)
class Dequantized:
    weight: torch.Tensor  # float64, the layer's logical shape
    step: torch.Tensor | None  # float64, broadcastable to ``weight``; None where no step is known
    kind: str  # the stored type, e.g. "torchao Int8Tensor int8"
    gap: float = 0.0  # a codebook's widest gap (bitsandbytes 4-bit): its step is the block's absmax times it


def float8_spacing(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The gap between neighbouring float8 values at |values| (float64): 2^(max(e, emin) − mantissa bits)."""
    mantissa, emin = FLOAT8[dtype]
    mag = values.double().abs()
    exponent = torch.floor(torch.log2(mag.clamp_min(torch.finfo(torch.float64).tiny))).clamp_min(emin)
    return torch.exp2(exponent - mantissa)


def _broadcast(scale: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A per-row or per-block scale expanded to ``shape`` (each dim a whole multiple of the scale's)."""
    s = scale.double()
    while s.dim() < len(shape):
        s = s.unsqueeze(-1)
    for dim, (n, m) in enumerate(zip(shape, s.shape)):
        if m not in (1, n):
            s = s.repeat_interleave(n // m, dim=dim)
    return s


def _scaled(data: torch.Tensor, scale: torch.Tensor, kind: str) -> Dequantized:
    s = _broadcast(scale, data.shape)
    weight = data.double() * s
    if data.dtype in FLOAT8:
        step = s * float8_spacing(data, data.dtype)
    else:
        step = s.expand_as(weight)
    return Dequantized(weight, step, kind)


def dequantize(param: torch.Tensor, module: nn.Module | None = None) -> Dequantized | None:
    """``param`` in float64 with its steps, or None for a plain floating-point tensor."""
    cls = type(param).__name__
    if cls in ("Int8Tensor", "Float8Tensor") and hasattr(param, "qdata"):  # torchao
        return _scaled(param.qdata, param.scale, f"torchao {cls} {str(param.qdata.dtype).removeprefix('torch.')}")
    if cls == "WeightQBytesTensor":  # quanto int8 / float8
        return _scaled(param._data, param._scale, f"quanto {str(param._data.dtype).removeprefix('torch.')}")
    if cls == "WeightQBitsTensor":  # quanto int4 / int2: the library's own unpacking
        weight = param.dequantize().double()
        bits = param._qtype.bits
        rows = weight.reshape(weight.shape[0], -1)
        # the coarsest group of each row bounds every group's step in it
        step = ((rows.amax(1) - rows.amin(1)) / (2**bits - 1)).reshape(-1, *([1] * (weight.dim() - 1)))
        return Dequantized(weight, step.expand_as(weight), f"quanto int{bits}")
    if cls == "GGUFParameter":
        from parity.quant.gguf_file import block_steps, dequantize_bytes

        name = param.quant_type.name
        raw = param.as_tensor()
        if name in ("F32", "F16", "BF16"):
            return None
        weight = dequantize_bytes(raw, name)
        return Dequantized(weight, block_steps(raw, name), f"GGUF {name}")
    if cls == "Int8Params" and getattr(param, "SCB", None) is not None:  # bitsandbytes LLM.int8
        scale = param.SCB.double().reshape(-1, 1) / 127.0
        return Dequantized(param.data.double() * scale, scale.expand(param.shape).clone(), "bitsandbytes int8")
    if cls == "Params4bit" and getattr(param, "quant_state", None) is not None:
        return _bnb4(param)
    if param.dtype in FLOAT8:  # layerwise casting stores the weight itself in float8
        return Dequantized(param.double(), float8_spacing(param, param.dtype),
                           f"layerwise {str(param.dtype).removeprefix('torch.')}")
    return None


def _bnb4(param: torch.Tensor) -> Dequantized:
    import bitsandbytes.functional as F

    state = param.quant_state
    weight = F.dequantize_4bit(param.data, state).double()
    code = state.code.double().sort().values
    gap = float((code[1:] - code[:-1]).max())
    absmax = state.absmax.double().flatten()
    step = (absmax * gap).repeat_interleave(state.blocksize)[: weight.numel()].reshape(weight.shape)
    return Dequantized(weight, step, f"bitsandbytes {state.quant_type}", gap)


def requant_step(reference: torch.Tensor, like: Dequantized) -> torch.Tensor | None:
    """The step a requantization of ``reference`` (float64, e.g. W + δ) to ``like``'s type would have:
    its scales recomputed from the reference's own absmax, never read from the requantized tensor
    under test. None for a type that is not requantized by a fuse (GGUF, quanto's packed bits)."""
    kind = like.kind
    rows = reference.reshape(reference.shape[0], -1).abs().amax(1).reshape(-1, *([1] * (reference.dim() - 1)))
    if kind in ("torchao Int8Tensor int8", "quanto int8", "bitsandbytes int8"):
        return (rows / 127.0).expand_as(reference)
    for dtype in FLOAT8:
        name = str(dtype).removeprefix("torch.")
        mantissa, emin = FLOAT8[dtype]
        # float8's grid around x is at most 2^-m·|x| wide (normal), scale·2^(emin−m) (subnormal): a bound
        # that only grows with |x| and the scale, so an upper bound of either gives an upper bound of it
        if kind in (f"torchao Float8Tensor {name}", f"quanto {name}"):
            scale = rows / torch.finfo(dtype).max
            return reference.abs() * 2.0**-mantissa + scale * 2.0 ** (emin - mantissa)
        if kind == f"layerwise {name}":
            return reference.abs() * 2.0**-mantissa + 2.0 ** (emin - mantissa)
    if like.gap and reference.numel() % 64 == 0:  # bitsandbytes nf4 / fp4: per 64-block absmax
        blocks = reference.flatten().abs().reshape(-1, 64).amax(1)
        return (blocks * like.gap).repeat_interleave(64).reshape(reference.shape)
    return None


def quantized_weights(model: nn.Module) -> dict[str, Dequantized]:
    """Canonical module name → the dequantized weight of every module whose weight is quantized."""
    from parity.modules import canonical_name

    out = {}
    for name, module in model.named_modules():
        weight = module.__dict__.get("_parameters", {}).get("weight")
        if weight is None:
            continue
        deq = dequantize(weight, module)
        if deq is not None:
            out[canonical_name(name)] = deq
    return out


Values = Callable[[str, str], torch.Tensor]  # parity/checks/fresh_copies.py's: (component, name) → value


def dequantized_values(quantized: Mapping[str, nn.Module], values: Values) -> Values:
    """``values`` (a float pipeline's float64-exact tensor values, fresh_copies.stored_values) for a pipeline
    whose models ``quantized`` (component → model) hold quantized weights: each quantized parameter as our
    float64 dequantization W_q, read when asked for; every other tensor as ``values`` gives it. The float64
    twins of the hotswap and golden checks are built from this."""
    params = {c: dict(m.named_parameters()) for c, m in quantized.items()}

    def value(component: str, name: str) -> torch.Tensor:
        param = params.get(component, {}).get(name)
        deq = None if param is None else dequantize(param)
        return values(component, name) if deq is None else deq.weight.to(param.device)

    return value
