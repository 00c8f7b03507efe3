"""What one benchmark records in pytest-benchmark's ``extra_info``: the contract between the
benchmark suites (writers) and the report and run comparison (readers).

pytest-benchmark keeps the timings (``stats``: min, max, mean, stddev, median, iqr, rounds) and the
machine; this adds what a reader needs to group, pair and explain them. Keys are flat JSON values so
the JSON stays readable without this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# kinds of timed thing
FORWARD = "forward"  # one denoiser forward
PIPELINE = "pipeline"  # one full (tiny) pipeline call
OPERATION = "operation"  # a LoRA API call: load, fuse, unfuse, hotswap, set_adapters, first calls
CHECK = "check"  # `lora-parity check` against its floor, timed interleaved (parity/bench/checkcost.py)
# a group's modes timed round-robin in a fresh random order each round (parity/bench/groups.py): one
# record per family × size × dtype × device × call, each mode's ratio to base paired per round
INTERLEAVED = "interleaved"
KINDS = (FORWARD, PIPELINE, OPERATION, CHECK, INTERLEAVED)

# forward / pipeline modes, in the order reports list them
BASE = "base"
FUSED = "fused"
FUSED_UNLOADED = "fused+unloaded"
BASE_AGAIN = "base-again"  # the A/A control: a second copy of base, timed as a mode of its own
COMPILED_BASE = "compiled-base"
COMPILED_FUSED = "compiled-fused"
HOTSWAP_READY = "compiled-hotswap-ready"  # mode name gets "-r{target_rank}"


def unfused_mode(adapters: int) -> str:
    return f"unfused-{adapters}"


def hotswap_ready_mode(target_rank: int) -> str:
    return f"{HOTSWAP_READY}-r{target_rank}"


def baseline_mode(mode: str) -> str:
    """The mode a mode's latency is divided by: compiled modes against compiled base, others against base."""
    return COMPILED_BASE if mode.startswith("compiled-") else BASE


# operations (kind == OPERATION)
# a quantized subject's from_pretrained(quantization_config) of its denoiser (parity/bench/quantized.py)
LOAD_QUANTIZE = "load+quantize"
OPERATIONS = (
    "load_lora_weights",
    "fuse_lora",
    "unfuse_lora",
    "hotswap",
    "set_adapters",
    "first-call-after-hotswap",
    "first-call-after-reload",
)

# A fused model runs exactly the base arithmetic; above this ratio the report flags it.
FUSED_RATIO_FLAG = 1.02

# The one mode of kind CHECK, and issue 15's bound on it: check takes at most this many times its floor
# (from_pretrained + load_lora_weights + fuse_lora + unfuse_lora on the same model and files).
CHECK_VS_FLOOR = "check-vs-floor"
CHECK_RATIO_BOUND = 1.5


@dataclass
class BenchInfo:
    kind: str
    family: str
    mode: str  # a forward/pipeline mode, or an operation name
    dtype: str  # "float32", "float16", "bfloat16"
    device: str  # "cpu" or "cuda"
    device_name: str  # GPU name, or the CPU model
    device_class: str  # "cpu" or "cuda-sm90": what golden/ and run comparison group by
    size: str  # "tiny", "small", "full", or "model-path"
    rank: int = 0  # LoRA rank of each adapter (0: no LoRA)
    adapters: int = 0  # adapters loaded and active
    target_rank: int | None = None  # enable_lora_hotswap padding, hotswap-ready modes only
    compiled: bool = False
    backend: str | None = None  # torch.compile backend when compiled
    # Arithmetic: FLOPs of one base call, and the extra FLOPs unfused LoRA adds to it
    # (per targeted Linear 2·r·(in+out) per row against the layer's 2·in·out).
    flops_base: float | None = None
    flops_lora: float | None = None
    peak_memory_bytes: int | None = None  # above what was allocated before the call
    memory_kind: str | None = None  # "cuda-max-allocated" or "cpu-rss-peak"
    versions: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    # Kind CHECK only: each round's check and floor seconds (same index, same round), the median of the
    # per-round ratios check/floor with its bootstrap interval, and the bound it is held to. The stats
    # pytest-benchmark keeps are the check's.
    check_seconds: list[float] | None = None
    floor_seconds: list[float] | None = None
    ratio: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    ratio_bound: float | None = None
    # Kind INTERLEAVED only: the call timed ("forward" or "pipeline"), each mode's seconds per round (same
    # index, same round), each mode's ratio to base as [median, low, high] of the per-round ratios, the
    # FLOP floor of each, and the noise floor: how far the A/A pair's interval reaches from 1.
    call: str | None = None
    mode_seconds: dict[str, list[float]] | None = None
    mode_ratios: dict[str, list[float]] | None = None
    mode_flop_floors: dict[str, float | None] | None = None
    noise_floor: float | None = None
    # A quantized subject (benchmarks/test_bench_quantized.py): the --quantization name its denoiser was
    # quantized by, and the modes it could not enter with why (fused where fuse_lora raises: GGUF, fp8)
    quantization: str | None = None
    skipped_modes: dict[str, str] | None = None

    @property
    def flop_floor(self) -> float | None:
        return flop_floor(self.flops_base, self.flops_lora)

    def to_extra_info(self) -> dict[str, Any]:
        out = asdict(self)
        out["flop_floor"] = self.flop_floor
        return out

    @classmethod
    def from_extra_info(cls, info: dict[str, Any]) -> BenchInfo:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in info.items() if k in known})


def flop_floor(flops_base: float | None, flops_lora: float | None) -> float | None:
    """The latency ratio against base that the arithmetic alone predicts (1 + extra/base)."""
    if not flops_base or flops_lora is None:
        return None
    return 1.0 + flops_lora / flops_base


def group_name(info: BenchInfo) -> str:
    """pytest-benchmark's group: one table per family × dtype × device × kind."""
    quantized = f"/{info.quantization}" if info.quantization else ""
    return f"{info.family}/{info.size}{quantized}/{info.dtype}/{info.device}/{info.kind}"
