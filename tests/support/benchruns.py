"""Synthetic pytest-benchmark JSON files with known medians, laid out as pytest-benchmark 5.3.1 writes
them (``--benchmark-json``): stats come from pytest-benchmark's own ``Stats`` over the samples."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_benchmark.stats import Stats

from parity.bench.record import (
    BASE,
    COMPILED_BASE,
    COMPILED_FUSED,
    FORWARD,
    FUSED,
    FUSED_UNLOADED,
    OPERATION,
    BenchInfo,
    group_name,
    unfused_mode,
)

CPU_NAME = "AMD EPYC 7763 64-Core Processor"
GPU_NAME = "NVIDIA H100 80GB HBM3"
MACHINE_INFO = {
    "node": "runner-1",
    "processor": "x86_64",
    "machine": "x86_64",
    "python_compiler": "GCC 12.2.0",
    "python_implementation": "CPython",
    "python_implementation_version": "3.11.7",
    "python_version": "3.11.7",
    "python_build": ["main", "Dec  4 2023 18:10:11"],
    "release": "6.1.0",
    "system": "Linux",
    "cpu": {
        "python_version": "3.11.7.final.0 (64 bit)",
        "cpuinfo_version": [9, 0, 0],
        "cpuinfo_version_string": "9.0.0",
        "arch": "X86_64",
        "bits": 64,
        "count": 16,
        "arch_string_raw": "x86_64",
        "vendor_id_raw": "AuthenticAMD",
        "brand_raw": CPU_NAME,
        "hz_advertised_friendly": "2.4500 GHz",
        "hz_actual_friendly": "2.4500 GHz",
        "hz_advertised": [2450000000, 0],
        "hz_actual": [2450000000, 0],
        "l2_cache_size": 8388608,
        "flags": ["avx", "avx2", "fma"],
    },
}
COMMIT_INFO = {"id": "0123456789abcdef0123456789abcdef01234567", "time": "2026-05-01T10:00:00+00:00",
               "author_time": "2026-05-01T10:00:00+00:00", "dirty": False, "project": "lora-parity", "branch": "main"}
OPTIONS = {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "max_time": 1.0, "min_time": 5e-06,
           "warmup": False}
VERSIONS = {"torch": "2.13.0", "diffusers": "0.42.0", "peft": "0.17.1", "python": "3.11.7"}
SPREAD = (-0.02, -0.01, 0.0, 0.01, 0.02)  # odd count, symmetric: the median is exactly the given value


def info(mode: str, kind: str = FORWARD, family: str = "sd15", dtype: str = "float32", device: str = "cpu",
         **changes: Any) -> BenchInfo:
    lora = mode not in (BASE, COMPILED_BASE) and kind != OPERATION
    base = BenchInfo(
        kind=kind, family=family, mode=mode, dtype=dtype, device=device,
        device_name=GPU_NAME if device == "cuda" else CPU_NAME,
        device_class="cuda-sm90" if device == "cuda" else "cpu", size="tiny",
        rank=4 if lora or kind == OPERATION else 0, adapters=1 if lora else 0,
        compiled=mode.startswith("compiled-"), backend="inductor" if mode.startswith("compiled-") else None,
        flops_base=1e9, flops_lora=(3e7 if mode.startswith("unfused") else 0.0) if lora else None,
        peak_memory_bytes=50 * 2**20, memory_kind="cuda-max-allocated" if device == "cuda" else "cpu-rss-peak",
        versions=dict(VERSIONS),
    )
    return replace(base, **changes)


def stats(median: float) -> dict[str, Any]:
    s = Stats()
    for offset in SPREAD:
        s.update(median * (1.0 + offset))
    out = s.as_dict()
    out["data"] = list(s.data)
    out["iterations"] = 1
    return out


def bench(bench_info: BenchInfo | None, median: float, name: str | None = None) -> dict[str, Any]:
    """One ``benchmarks`` entry; ``bench_info=None`` is a foreign benchmark with its own extra_info."""
    if bench_info is None:
        name = name or "test_foreign"
        return {"group": None, "name": name, "fullname": f"tests/test_foreign.py::{name}", "params": None,
                "param": None, "extra_info": {"rows": 3}, "options": dict(OPTIONS), "stats": stats(median)}
    param = f"{bench_info.family}-{bench_info.size}-{bench_info.mode}-{bench_info.dtype}-{bench_info.device}"
    test = "test_operation" if bench_info.kind == OPERATION else f"test_{bench_info.kind}"
    name = name or f"{test}[{param}]"
    return {
        "group": group_name(bench_info),
        "name": name,
        "fullname": f"benchmarks/test_bench.py::{name}",
        "params": {"case": param},
        "param": param,
        "extra_info": bench_info.to_extra_info(),
        "options": dict(OPTIONS),
        "stats": stats(median),
    }


def run_json(benchmarks: list[dict[str, Any]], machine_info: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "machine_info": machine_info or json.loads(json.dumps(MACHINE_INFO)),
        "commit_info": dict(COMMIT_INFO),
        "benchmarks": benchmarks,
        "datetime": "2026-05-01T10:05:00.000000+00:00",
        "version": "5.3.1",
    }


def write_run(path: Path, benchmarks: list[dict[str, Any]], machine_info: dict[str, Any] | None = None) -> Path:
    path.write_text(json.dumps(run_json(benchmarks, machine_info), indent=4))
    return path


def standard_benchmarks(scale: float = 1.0, fused: float = 1.0, unfused: float = 1.05, device: str = "cpu",
                        dtypes: tuple[str, ...] = ("float32", "bfloat16")) -> list[dict[str, Any]]:
    """A full run of one family: every forward mode per dtype, and the operations. ``fused`` is the
    fused, fused+unloaded and compiled-fused ratio to their baseline; ``scale`` multiplies every time."""
    out = []
    for dtype in dtypes:
        base, compiled = 0.010 * scale, 0.006 * scale
        modes = [(BASE, base), (unfused_mode(1), base * unfused), (unfused_mode(2), base * unfused ** 2),
                 (FUSED, base * fused), (FUSED_UNLOADED, base * fused), (COMPILED_BASE, compiled),
                 (COMPILED_FUSED, compiled * fused)]
        out += [bench(info(mode, dtype=dtype, device=device), median) for mode, median in modes]
    out += [bench(info(op, kind=OPERATION, device=device), median * scale)
            for op, median in (("load_lora_weights", 0.2), ("fuse_lora", 0.01), ("unfuse_lora", 0.01),
                               ("set_adapters", 0.0005))]
    return out


def fullname(benchmarks: list[dict[str, Any]], mode: str, dtype: str = "float32") -> str:
    (hit,) = [b["fullname"] for b in benchmarks
              if b["extra_info"].get("mode") == mode and b["extra_info"].get("dtype") == dtype]
    return hit


def scaled(benchmarks: list[dict[str, Any]], factors: dict[str, float]) -> list[dict[str, Any]]:
    """A copy whose benchmarks named in ``factors`` (by fullname) have every sample multiplied."""
    out = []
    for b in benchmarks:
        b = json.loads(json.dumps(b))
        factor = factors.get(b["fullname"], 1.0)
        if factor != 1.0:
            median = b["stats"]["median"] * factor
            b["stats"] = stats(median)
        out.append(b)
    return out
