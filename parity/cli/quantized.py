"""How ``lora-parity check --quantization NAME`` prints its report (parity/quant/check.py)."""

from __future__ import annotations

import argparse

from parity.cli.output import table, versions_line
from parity.errors import ParityInputError
from parity.quant.check import QuantReport, QuantRequest


def quant_request(args: argparse.Namespace, model_path: str | None) -> QuantRequest:
    if len(args.dtype) != 1:
        raise ParityInputError(f"--quantization takes one --dtype, the compute dtype (got {', '.join(args.dtype)})")
    gguf = None
    if args.quantization == "gguf":  # the .gguf is the denoiser; --model-config the folder of the rest
        if args.model_path is None or not str(args.model_path).endswith(".gguf"):
            raise ParityInputError("--quantization gguf needs --model-path FILE.gguf (the user's GGUF denoiser)",
                                   path=args.model_path)
        gguf, model_path = args.model_path, args.model_config
    return QuantRequest(args.family, tuple(args.lora), args.quantization, args.dtype[0], args.scale,
                        None if args.weights is None else tuple(args.weights), args.cycles, args.device, model_path,
                        args.allow_pickle, gguf)


def _ok(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def format_quant(report: QuantReport) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items()
                         if k in ("bitsandbytes", "torchao", "optimum-quanto", "gguf"))
    lines = [f"lora-parity check: family {report.family}, model {report.model}, device {report.device}, "
             f"quantization {report.quantization} ({report.how}), compute dtype {report.dtype}",
             versions_line(report.versions) + (f"; {versions}" if versions else ""), ""]
    rows = [["file", "layout", "modules matched", "keys unmatched", "algorithms"]]
    rows += [[f.path, f.layout, str(sum(f.matched.values())), str(len(f.unmatched)), ", ".join(f.algorithms)]
             for f in report.files]
    lines += ["LoRA files", *table(rows), ""]
    lines.append("targeted weights as stored: " + ", ".join(f"{n} {kind}" for kind, n in report.stored.items()))
    out = report.output
    if "error" in out:
        output = f"{out['error']:.3g} (budget {out['budget']:.3g}) {_ok(out['error'] <= out['budget'])}"
    else:
        output = out.get("skipped") or f"raised {out.get('raised')}"
    b, c, f = report.base_forward, report.contribution, report.fused
    rows = [["measurement (against our float64 reference from the dequantized weights)", "worst", "result"],
            ["unfused: quantized base forward vs x @ W_q^T (ratio to bound)", f"{b.ratio:.3g} over {b.layers} layers",
             _ok(b.ok)],
            ["unfused: LoRA contribution vs x @ delta^T (ratio to bound)", f"{c.ratio:.3g} over {c.layers} layers",
             _ok(c.ok)],
            ["unfused: denoiser output vs float64 forward of W_q + delta", output, ""],
            [f"fuse_lora at scale {report.lora_scale:g}: {report.fuse}",
             f"{f.steps:.3g} steps, {f.ratio:.3g}x bound" if f.layers else "-",
             _ok(f.ok and not report.fuse.startswith("raised") and report.fuse != "merged nothing")]]
    for cycle, d in enumerate(report.unfuse, start=1):
        rows.append([f"unfuse_lora, cycle {cycle}: drift from W_q", f"{d.steps:.3g} steps, {d.ratio:.3g}x bound",
                     _ok(d.ok)])
    lines += table(rows)
    verdict = "PASS" if report.ok else "FAIL: a parity check failed"
    if not report.ok:
        verdict += "".join(f"\n  {failure}" for failure in report.failures)
    verdict += "".join(f"\n  {known}" for known in report.known)
    return "\n".join([*lines, "", verdict])
