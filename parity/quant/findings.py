"""What diffusers + PEFT do with a LoRA on a quantized base instead of what the check demands, pinned as
data (``Known``, as parity/checks/findings.py's): the quantized case table marks the cases that show
each as strict xfails, and a user's report names one where its own symptom shows.

Measured on diffusers 0.42.1, peft 0.21.2, torch 2.13 (CPU), torchao 0.18.0, optimum-quanto 0.2.7,
gguf 0.19.0 (docs/quantization-probe-2026-12-07.md has the first measurement and the source lines).
"""

from __future__ import annotations

from typing import Any

from parity.checks.findings import Known
from parity.errors import LoaderRefused
from parity.quant.registry import Quantizer

QUANTO_FUSE_MERGES_NOTHING = Known(
    "finding: fuse_lora on a quanto-quantized base merges nothing and reports success: PEFT's generic "
    "lora.Linear.merge adds ΔW to base_layer.weight.data, and for quanto's WeightQBytesTensor/WeightQBitsTensor "
    "that add leaves the stored int8/float8 data unchanged; merged_adapters is set, the LoRA layer stops "
    "contributing, so a fused model runs as the base without its LoRA"
)

GGUF_FUSE_RAISES = Known(
    "finding: fuse_lora on a GGUF-quantized base raises (RuntimeError: The size of tensor a (…) must match the "
    "size of tensor b (…)): PEFT's lora.Linear.merge adds the float ΔW (out, in) to the GGUFParameter's "
    "packed bytes (out, in/32·34 for Q8_0), peft/tuners/lora/layer.py `base_layer.weight.data += delta_weight`; "
    "diffusers' fuse_lora does no check of its own. The unfused LoRA is right"
)

LAYERWISE_LORA_CAST_TO_STORAGE = Known(
    "finding: a LoRA loaded after enable_layerwise_casting(storage_dtype=float8) is cast to the float8 storage "
    "dtype with its base layer (load_lora_adapter casts new adapters to the base weight's dtype), and the "
    "casting hooks do not cover PEFT's lora_A/lora_B: the unfused forward multiplies in float8 and raises "
    "(CPU: NotImplementedError \"mul_cpu_reduced_float\" not implemented for 'Float8_e4m3fn')"
)

GGUF_DEQUANT_FLOAT16 = Known(
    "finding: diffusers' GGUFLinear.forward_native (the CPU path, and CUDA without the kernels package) "
    "dequantizes in float16 whatever compute_dtype says: dequantize_gguf_tensor calls the block dequantizer "
    "with dtype=None, so `d.view(torch.float16).to(None) * q` is formed and held in float16 and only then cast "
    "to compute_dtype (diffusers/quantizers/gguf/utils.py dequantize_gguf_tensor, dequantize_blocks_Q8_0). "
    "Every weight is rounded to float16 (up to 2^-11 relative, ~3% of a Q8_0 step) even with float32 compute: "
    "the base forward misses x @ W_qᵀ by that rounding and meets it with W_q rounded to float16"
)

QUANTO_FLUX_STATE_DICT_NAMES = Known(
    "finding: FLUX.1's LoRA loader refuses every file on a quanto-quantized transformer (KeyError: "
    "'context_embedder.weight'): FluxLoraLoaderMixin._maybe_expand_lora_state_dict looks each module's weight "
    "up in transformer.state_dict() by `<module>.weight`, and quanto stores it as `weight._data` and "
    "`weight._scale` (diffusers/loaders/lora_pipeline.py, `transformer_state_dict[base_param_name]`)",
    raises=LoaderRefused,
)


def shows(quantizer: Quantizer, report: Any) -> list[Known]:
    """The findings ``report`` shows by their own symptoms."""
    out = []
    if quantizer.backend == "quanto" and report.fuse == "merged nothing":
        out.append(QUANTO_FUSE_MERGES_NOTHING)
    if quantizer.backend == "gguf" and report.base_forward_float16 is not None and report.base_forward_float16 <= 1:
        out.append(GGUF_DEQUANT_FLOAT16)
    if quantizer.backend == "gguf" and report.fuse.startswith("raised RuntimeError") and "size of tensor" in report.fuse:
        out.append(GGUF_FUSE_RAISES)
    if quantizer.backend == "layerwise" and any("raised" in f and "Float8" in f for f in report.failures):
        out.append(LAYERWISE_LORA_CAST_TO_STORAGE)
    return out


def refusal_shown(quantizer: Quantizer, reason: str) -> Known | None:
    """The finding a loader's refusal on a quantized base is, by its message."""
    if quantizer.backend == "quanto" and reason.startswith("KeyError") and ".weight'" in reason:
        return QUANTO_FLUX_STATE_DICT_NAMES
    return None


def known_line(known: Known) -> str:
    return "known diffusers behaviour: " + known.reason.removeprefix("finding: ")


def findings_shown(quantizer: Quantizer, report: Any) -> list[str]:
    return [known_line(k) for k in shows(quantizer, report)]
