"""What this machine can run, in one report: ``lora-parity doctor`` prints it, ``lora-parity --version``
prints its first lines, tests and other tools call ``collect`` for the same data.

The report is informative, never a gate: a section that cannot be collected (a broken install, an
import that raises) holds ``{"error": "..."}`` in place of its rows, and the rest is still reported.

Sections (the keys of ``collect``'s dict, which is also the ``--json`` file):

- ``versions``: lora-parity, python, torch, diffusers, peft, transformers, safetensors
  (parity/versions.py) and the installed quantizer packages (parity/quant/registry.py).
- ``device``: the CPU (model, cores, memory) and each CUDA device with its compute capability and
  device class (parity/devices.py), or why there is none.
- ``families``: every zoo family, available or the reason it is not (parity/zoo/registry.py's UNAVAILABLE:
  what every command will refuse it with).
- ``quantizers``: every ``--quantization`` choice, on cpu and (where there is one) on cuda, available or
  the reason (``Quantizer.unavailable``, which names the pip package to install).
- ``golden``: per device class this machine has, how many of the golden cases have a committed baseline
  in ``golden_dir`` (parity/golden/store.py), and which are missing.

Imports of torch and the zoo are inside the functions: parity.cli imports this module at every start,
and ``--version`` must not pay for them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

# The libraries --version names, in its order; the rest of library_versions() is in the doctor's table.
VERSION_LINE_PACKAGES = ("torch", "diffusers", "peft", "transformers")
MISSING_SHOWN = 8  # missing golden cases named in the text (the JSON lists all of them)


def versions() -> dict[str, str]:
    """lora-parity, python and the libraries (parity/versions.py), then the quantizer packages installed."""
    from parity.versions import library_versions

    out = library_versions()
    try:
        from parity.quant.registry import quantizer_versions

        out.update(quantizer_versions())
    except Exception as exc:  # noqa: BLE001 - the doctor reports what it cannot read
        out["quantizer packages"] = f"error: {type(exc).__name__}: {exc}"
    return out


def version_text() -> str:
    """``lora-parity --version``: the package's version, then the libraries a result depends on."""
    from parity.versions import library_versions

    v = library_versions()
    libraries = ", ".join(f"{name} {v[name]}" for name in VERSION_LINE_PACKAGES)
    return f"lora-parity {v['lora-parity']}\n{libraries} (python {v['python']})"


def _section(collect: Callable[[], Any]) -> Any:
    try:
        return collect()
    except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
        return {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}


def device_info() -> dict[str, Any]:
    import psutil
    import torch

    from parity.bench.timing import device_name
    from parity.devices import cuda_available, device_class, requested

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    memory = psutil.virtual_memory()
    cpu = {"model": device_name("cpu"), "cores": os.cpu_count() or 0, "usable_cores": usable,
           "torch_threads": torch.get_num_threads(), "memory_gib": round(memory.total / 2**30, 1),
           "available_gib": round(memory.available / 2**30, 1)}
    cuda: list[dict[str, Any]] = []
    why_no_cuda = None
    if cuda_available():
        for index in range(torch.cuda.device_count()):
            major, minor = torch.cuda.get_device_capability(index)
            cuda.append({"index": index, "name": torch.cuda.get_device_name(index),
                         "compute_capability": f"{major}.{minor}", "device_class": device_class(f"cuda:{index}"),
                         "memory_gib": round(torch.cuda.get_device_properties(index).total_memory / 2**30, 1)})
    elif torch.version.cuda is None:
        why_no_cuda = f"torch {torch.__version__} is a CPU-only build"
    else:
        why_no_cuda = f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
    return {"cpu": cpu, "cuda": cuda, "why_no_cuda": why_no_cuda, "cuda_runtime": torch.version.cuda,
            "default_device": requested("auto")}


def families() -> list[dict[str, Any]]:
    from parity.zoo import registry

    return [{"name": f.name, "pipeline": f.pipeline_class, "available": f.name not in registry.UNAVAILABLE,
             "reason": registry.UNAVAILABLE.get(f.name)} for f in registry.ALL]


def _device_kinds(device: dict[str, Any]) -> list[str]:
    return ["cpu", "cuda"] if isinstance(device, dict) and device.get("cuda") else ["cpu"]


def quantizers(kinds: list[str]) -> list[dict[str, Any]]:
    """Each quantizer on each device kind here: ``{"cpu": None}`` where it runs, else the reason."""
    from parity.quant.registry import QUANTIZERS

    return [{"name": q.name, "backend": q.backend, "package": q.pip or q.package or "torch",
             "unavailable": {kind: q.unavailable(kind) for kind in kinds}} for q in QUANTIZERS]


def golden(golden_dir: str, device: dict[str, Any], quantizer_rows: Any) -> list[dict[str, Any]]:
    """Per device class here: the golden cases of the available families (and the committed quantized
    cases whose quantizer runs on that device kind) with and without a baseline in ``golden_dir``."""
    from pathlib import Path

    from parity.checks.cases import golden_cases
    from parity.devices import device_kind
    from parity.golden.quantized import quantization_of, quantized_golden_cases
    from parity.golden.store import GoldenStore

    classes = ["cpu"] + sorted({d["device_class"] for d in device.get("cuda", [])} if isinstance(device, dict) else [])
    runs = {}  # quantizer name -> the device kinds it runs on
    if isinstance(quantizer_rows, list):
        runs = {row["name"]: {k for k, why in row["unavailable"].items() if why is None} for row in quantizer_rows}
    out = []
    for cls in classes:
        kind = device_kind(cls)
        folder = Path(golden_dir) / cls
        store = GoldenStore(Path(golden_dir), cls)
        cases = golden_cases()
        cases += [c for c in quantized_golden_cases(families=None)
                  if c.family in {f.family for f in cases} and kind in runs.get(quantization_of(c) or "", ())]
        missing = [c.id for c in cases if not store.has(c.id)]
        out.append({"device_class": cls, "folder": str(folder), "exists": folder.is_dir(),
                    "expected": len(cases), "present": len(cases) - len(missing), "missing": missing,
                    "this_device": kind == device.get("default_device")})
    return out


def collect(golden_dir: str = "golden") -> dict[str, Any]:
    """Everything ``lora-parity doctor`` reports, as JSON-ready data (see the module's docstring)."""
    device = _section(device_info)
    quantizer_rows = _section(lambda: quantizers(_device_kinds(device)))
    return {
        "versions": _section(versions),
        "device": device,
        "families": _section(families),
        "quantizers": quantizer_rows,
        "golden": _section(lambda: golden(golden_dir, device, quantizer_rows)),
    }


# ------------------------------------------------------------------------------------------ the text
def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _error(section: Any) -> list[str] | None:
    if isinstance(section, dict) and "error" in section:
        return [f"  could not be read: {section['error']}"]
    return None


def _versions_text(v: Any) -> list[str]:
    return _error(v) or _table([["package", "version"], *([name, version] for name, version in v.items())])


def _device_text(d: Any) -> list[str]:
    if (err := _error(d)) is not None:
        return err
    c = d["cpu"]
    lines = [f"  cpu: {c['model']}, {c['cores']} cores ({c['usable_cores']} usable, torch uses {c['torch_threads']} "
             f"threads), {c['memory_gib']} GiB memory ({c['available_gib']} GiB available)"]
    if d["cuda"]:
        lines += [f"  cuda:{g['index']}: {g['name']}, compute capability {g['compute_capability']} "
                  f"(device class {g['device_class']}), {g['memory_gib']} GiB" for g in d["cuda"]]
        lines.append(f"  CUDA runtime {d['cuda_runtime']}")
    else:
        lines.append(f"  cuda: none ({d['why_no_cuda']})")
    lines.append(f"  --device auto runs on: {d['default_device']}")
    return lines


def _families_text(rows: Any) -> list[str]:
    if (err := _error(rows)) is not None:
        return err
    lines = _table([["family", "pipeline", "runs here"],
                    *([r["name"], r["pipeline"], "yes" if r["available"] else "no"] for r in rows)])
    why = [f"  - {r['name']}: {r['reason']}" for r in rows if not r["available"]]
    return lines + (["  why not:", *why] if why else [])


def _quantizers_text(rows: Any) -> list[str]:
    if (err := _error(rows)) is not None:
        return err
    kinds = list(rows[0]["unavailable"]) if rows else ["cpu"]
    header = ["quantizer", "backend", "package", *kinds, *([] if "cuda" in kinds else ["cuda"])]
    body = [[r["name"], r["backend"], r["package"], *("yes" if r["unavailable"][k] is None else "no" for k in kinds),
             *([] if "cuda" in kinds else ["no device"])] for r in rows]
    why = [f"  - on {k}: {r['unavailable'][k]}" for r in rows for k in kinds if r["unavailable"][k] is not None]
    return _table([header, *body]) + (["  why not:", *why] if why else [])


def _golden_text(rows: Any) -> list[str]:
    if (err := _error(rows)) is not None:
        return err
    lines = []
    for r in rows:
        mark = " (this device)" if r["this_device"] else ""
        if not r["exists"]:
            lines.append(f"  {r['device_class']}{mark}: no baselines ({r['folder']}/ does not exist); create them with "
                         f"`lora-parity golden update --family FAMILY --golden-class {r['device_class']}`")
            continue
        lines.append(f"  {r['device_class']}{mark}: {r['present']} of {r['expected']} cases have a baseline in "
                     f"{r['folder']}/")
        if r["missing"]:
            shown = ", ".join(r["missing"][:MISSING_SHOWN])
            more = f" and {len(r['missing']) - MISSING_SHOWN} more" if len(r["missing"]) > MISSING_SHOWN else ""
            lines.append(f"    missing: {shown}{more}")
    return lines


def format_text(report: dict[str, Any]) -> str:
    """The report as ``lora-parity doctor`` prints it: one titled section per key."""
    sections = [("Versions", _versions_text(report["versions"])), ("Device", _device_text(report["device"])),
                ("Families (--family)", _families_text(report["families"])),
                ("Quantizers (--quantization)", _quantizers_text(report["quantizers"])),
                ("Golden images (golden/<device class>/)", _golden_text(report["golden"]))]
    return "\n\n".join("\n".join([title, *lines]) for title, lines in sections)
