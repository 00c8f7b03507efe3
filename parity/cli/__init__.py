"""``lora-parity``: command-line front end of the parity harness.

Every subcommand is a (name, help, add_arguments, run) entry in ``SUBCOMMANDS``; ``run`` takes the
parsed arguments and returns the exit code. Exit codes: 0 every check passed, 1 a parity check
failed, 2 bad input (printed as one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from parity.errors import ParityInputError
from parity.quiet import quiet_libraries
from parity.versions import library_versions

PROG = "lora-parity"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
UNFUSE_LORA_SCALE = 1.0
SHOWN_UNMATCHED = 3  # unmatched keys named in the text output; JSON lists them all


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is the same single stderr line as every other input error."""

    def error(self, message: str) -> NoReturn:
        _print_error(f"{message} (see '{self.prog} --help')")
        raise SystemExit(EXIT_BAD_INPUT)


def _print_error(message: str) -> None:
    # Library messages may span lines; the contract is one line per error.
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


# ---------------------------------------------------------------- shared helpers


def _comma_list(text: str) -> list[str]:
    items = [part.strip() for part in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"empty item in {text!r}")
    return items


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _float_list(text: str) -> list[float]:
    return [_finite_float(item) for item in _comma_list(text)]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Left-aligned columns, two spaces apart; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else str(x)


def _json_safe(value: Any) -> Any:
    # inf/nan are not JSON; an element that overflowed reads as null (and its result is not ok).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


class _Progress:
    """``[i/n] label ... ok (1.2 s)`` lines on stderr, so stdout carries only the report."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done = total, enabled, 0

    @contextmanager
    def step(self, label: str) -> Iterator[Callable[[bool], None]]:
        self.done += 1
        outcome = {"ok": True}
        if self.enabled:
            print(f"[{self.done}/{self.total}] {label} ...", end="", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            yield lambda ok: outcome.update(ok=ok)
        except BaseException:
            if self.enabled:  # end the open line so a traceback starts on its own
                print(" error", file=sys.stderr, flush=True)
            raise
        if self.enabled:
            word = "ok" if outcome["ok"] else "FAIL"
            print(f" {word} ({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- check


CHECK_DESCRIPTION = f"""\
Fuse the given LoRA files into a family's pipeline with diffusers + PEFT and check the fused
weights against an independent float64 reference merge, per dtype; then check that repeated
fuse/unfuse cycles bring the base weights back within the rounding bound.

The unfuse cycles run on a freshly built pipeline with freshly loaded adapters, always at
lora_scale {UNFUSE_LORA_SCALE}: in diffusers 0.42 fuse_lora(lora_scale=s) multiplies PEFT's scaling
by s (scale_layer) and unfuse_lora never divides it back, so a second fuse at s != 1 would merge
s^2 times the delta. --scale therefore applies to the merge check only.

Exit codes: 0 all checks pass, 1 a parity check failed, 2 bad input."""


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser)
    parser.add_argument(
        "--lora", action="append", required=True, metavar="FILE", help=".safetensors LoRA file (repeatable)"
    )
    parser.add_argument(
        "--dtype",
        type=_comma_list,
        default=["float32"],
        metavar="DTYPES",
        help="comma-separated, from float32, float16, bfloat16 (default: float32)",
    )
    parser.add_argument(
        "--scale", type=_finite_float, default=1.0, help="lora_scale for the merge check (default: 1.0)"
    )
    parser.add_argument(
        "--weights",
        type=_float_list,
        help="comma-separated adapter weights, one per --lora, in order (default: 1.0 each)",
    )
    parser.add_argument(
        "--cycles", type=_positive_int, default=1, help="fuse/unfuse cycles for the drift check (default: 1)"
    )
    _add_pickle_argument(parser)
    _add_run_arguments(parser)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Which model a subcommand checks: a zoo family, tiny or from the user's folder."""
    parser.add_argument("--family", required=True, help="model family (see `lora-parity families`)")
    parser.add_argument(
        "--model-path",
        metavar="DIR",
        help="local diffusers pipeline folder; default: the family's tiny deterministic model",
    )


def _add_pickle_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read .bin/.pt/.pth/.ckpt LoRA files with torch.load(weights_only=True) (default: refuse them)",
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a subcommand runs and where its report goes: the same for every one of them."""
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT (a new file)")
    _add_overwrite_argument(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def _add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    # parity/runs/folders.py: a named output that holds a previous run's output is refused without this.
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous run's output at the named --json/--out/--report-dir")


@dataclass
class _Loaded:
    """A pipeline with the adapters loaded, and its base weights from before loading."""

    pipe: Any
    components: dict
    before: dict


def _check_device(name: str) -> str:
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ParityInputError(f"unknown device {name!r}; use cpu or cuda") from None
    if device.type not in ("cpu", "cuda"):
        raise ParityInputError(f"device {name!r} has no tolerance entries; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParityInputError(f"device {name!r} requested but CUDA is not available")
    return name


def _strict_float32(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False  # the bounds and budgets assume true float32 products


def _adapter_weights(weights: list[float] | None, n_files: int) -> list[float]:
    if weights is None:
        return [1.0] * n_files
    if len(weights) != n_files:
        raise ParityInputError(f"--weights has {len(weights)} value(s) for {n_files} --lora file(s)")
    return weights


def _check_json_target(path: str | None, overwrite: bool) -> None:
    # Find out before a long run, not after it, that the report cannot be written or would clobber one.
    from parity.runs.folders import claim_file

    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(parent):
        raise ParityInputError("cannot write the JSON report here", path=path)
    claim_file(path, overwrite)


def _build(family: Any, dtype: Any, args: argparse.Namespace) -> Any:
    from parity.zoo import build_pipeline

    if args.model_path is None:
        return build_pipeline(family, dtype=dtype, device=args.device)
    from parity.zoo.family import pretrained_dir

    pretrained_dir(args.model_path)  # missing folder / no model_index.json: its own clear message
    try:
        return build_pipeline(family, dtype=dtype, device=args.device, model_path=args.model_path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ParityInputError(f"diffusers could not load the model ({type(exc).__name__}: {exc})",
                               path=args.model_path) from None


def _failing_file(pipe: Any, paths: Sequence[str], loras: Sequence[Any]) -> str:
    """The file whose adapter did not finish loading: load_adapters loads a0, a1, … in order and
    diffusers removes a failed adapter, so the first one missing from any of its components."""
    loaded = pipe.get_list_adapters()
    for i, (path, lora) in enumerate(zip(paths, loras)):
        if any(f"a{i}" not in loaded.get(c, []) for c in lora.components()):
            return path
    return ", ".join(paths)


def _with_adapters(pipe: Any, family: Any, paths: Sequence[str], loras: Sequence[Any], weights: list[float]) -> _Loaded:
    from diffusers.utils import logging as diffusers_logging

    from parity.lora.formats import diffusers_source
    from parity.checks.fuse import load_adapters, snapshot

    components = family.components(pipe)
    before = snapshot(components)
    # diffusers logs a failed load at error level before raising; we report it as our one line.
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    try:
        # The tensors we read, not the path, for a pickle: diffusers must never unpickle a file itself.
        load_adapters(pipe, [diffusers_source(lora) for lora in loras], weights)
    except ParityInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever diffusers/PEFT reject is a property of the file
        raise ParityInputError(
            f"diffusers could not load it as a LoRA ({type(exc).__name__}: {exc})",
            path=_failing_file(pipe, paths, loras),
        ) from None
    finally:
        diffusers_logging.set_verbosity(level)
    return _Loaded(pipe, components, before)


def _file_report(lora: Any) -> dict[str, Any]:
    matched: dict[str, int] = {}
    for component, _ in lora.modules:
        matched[component] = matched.get(component, 0) + 1
    return {"path": lora.path, "layout": lora.layout, "matched": matched, "unmatched": list(lora.unmatched)}


def _result_report(dtype_name: str, scale: float, merge: Any, unfuse: Any) -> dict[str, Any]:
    failures = merge.failures()
    for cycle, ratio in enumerate(unfuse.bound_ratio, start=1):
        if ratio > 1.0:
            failures.append(f"unfuse: drift is {_fmt(ratio)}x the bound after cycle {cycle}")
            break
    failures += [f"unfuse: {name}: not targeted but changed" for name in unfuse.changed_untargeted]
    return {
        "dtype": dtype_name,
        "scale": scale,
        "max_ulps": merge.max_ulps,
        "max_bound_ratio": merge.max_bound_ratio,
        "ok": merge.ok and unfuse.ok,
        "failures": failures,
        "unfuse": {
            "cycles": unfuse.cycles,
            "lora_scale": UNFUSE_LORA_SCALE,
            "max_ulps": unfuse.max_ulps,
            "frac_changed": unfuse.frac_changed,
            "max_bound_ratio": max(unfuse.bound_ratio, default=0.0),
            "ok": unfuse.ok,
        },
    }


def _check_dtype(
    family: Any,
    args: argparse.Namespace,
    dtype: Any,
    loras: Sequence[Any],
    weights: list[float],
    progress: _Progress,
    preloaded: list[_Loaded],
) -> dict[str, Any]:
    """Merge check on a pipeline with the adapters loaded, then unfuse cycles on a fresh one."""
    import torch

    from parity.checks.fuse import fuse_and_measure, fuse_unfuse_cycles

    name = str(dtype).removeprefix("torch.")
    with progress.step(f"{name}: fuse at scale {args.scale:g}") as outcome:
        # Popped rather than passed in, so no caller frame keeps the fused pipeline alive below.
        loaded = preloaded.pop() if preloaded else _with_adapters(
            _build(family, dtype, args), family, args.lora, loras, weights
        )
        merge = fuse_and_measure(loaded.pipe, loaded.components, loaded.before, loras, weights, args.scale)
        outcome(merge.ok)
    del loaded
    with progress.step(f"{name}: {args.cycles} fuse/unfuse cycle(s) on a fresh pipeline") as outcome:
        fresh = _with_adapters(_build(family, dtype, args), family, args.lora, loras, weights)
        unfuse = fuse_unfuse_cycles(
            fresh.pipe, fresh.components, fresh.before, loras, weights, args.cycles, UNFUSE_LORA_SCALE
        )
        outcome(unfuse.ok)
    del fresh
    if torch.device(args.device).type == "cuda":
        torch.cuda.empty_cache()
    return _result_report(name, args.scale, merge, unfuse)


def _format_files(report: dict[str, Any]) -> list[str]:
    rows = [["file", "layout", "modules matched", "keys unmatched", "weight"]]
    for f, weight in zip(report["files"], report["weights"]):
        by_component = ", ".join(f"{c} {n}" for c, n in f["matched"].items())
        rows.append([f["path"], f["layout"], f"{sum(f['matched'].values())} ({by_component})",
                     str(len(f["unmatched"])), f"{weight:g}"])
    lines = ["LoRA files", *_table(rows)]
    for f in report["files"]:
        if f["unmatched"]:
            more = len(f["unmatched"]) - SHOWN_UNMATCHED
            names = ", ".join(f["unmatched"][:SHOWN_UNMATCHED]) + (f" (+{more} more)" if more > 0 else "")
            lines.append(f"  {f['path']}: keys matching no module: {names}")
    return lines


def _format_results(results: list[dict[str, Any]]) -> list[str]:
    first = results[0]
    lines = [f"Merge at scale {first['scale']:g}; unfuse over {first['unfuse']['cycles']} cycle(s) at scale "
             f"{UNFUSE_LORA_SCALE:g} (ULPs of the dtype; bound ratio <= 1 passes)"]
    rows = [["dtype", "merge max ULP", "merge bound ratio", "unfuse max ULP first/last",
             "not bit-exact first/last", "unfuse bound ratio", "result"]]
    for r in results:
        u = r["unfuse"]
        rows.append([
            r["dtype"], _fmt(r["max_ulps"]), _fmt(r["max_bound_ratio"]),
            f"{_fmt(u['max_ulps'][0])} / {_fmt(u['max_ulps'][-1])}",
            f"{u['frac_changed'][0]:.1%} / {u['frac_changed'][-1]:.1%}",
            _fmt(u["max_bound_ratio"]), "ok" if r["ok"] else "FAIL",
        ])
    lines += _table(rows)
    failures = [f"  {r['dtype']}: {failure}" for r in results for failure in r["failures"]]
    return lines + (["", "Failures", *failures] if failures else [])


def _format_check(report: dict[str, Any]) -> str:
    v = report["versions"]
    header = [
        f"lora-parity check: family {report['family']}, "
        f"model {report['model_path'] or 'tiny (built-in, seed 0)'}, device {report['device']}",
        f"versions: torch {v['torch']}, diffusers {v['diffusers']}, peft {v['peft']}, transformers {v['transformers']}",
    ]
    verdict = "PASS" if report["ok"] else "FAIL: a parity check failed"
    return "\n".join([*header, "", *_format_files(report), "", *_format_results(report["results"]), "", verdict])


def run_check(args: argparse.Namespace) -> int:
    """Read the files, then per dtype: fuse and measure, and fuse/unfuse cycles on a fresh pipeline."""
    from parity.tolerances import dtype_from_name
    from parity.lora.formats import read_lora
    from parity.zoo import get_family

    family = get_family(args.family)
    dtypes = {name: dtype_from_name(name) for name in args.dtype}
    _check_device(args.device)
    weights = _adapter_weights(args.weights, len(args.lora))
    _check_json_target(args.json, args.overwrite)
    quiet_libraries()
    warnings.filterwarnings("ignore")  # the CLI's stderr carries progress and at most one error line
    _strict_float32(args.device)

    # Every input error surfaces here, before the first progress line: model, files, diffusers' loader.
    first_pipe = _build(family, next(iter(dtypes.values())), args)
    loras = [read_lora(path, family.components(first_pipe), strict=False, allow_pickle=args.allow_pickle)
             for path in args.lora]
    preloaded = [_with_adapters(first_pipe, family, args.lora, loras, weights)]
    del first_pipe

    progress = _Progress(total=2 * len(dtypes), enabled=not args.quiet)
    results = [_check_dtype(family, args, dtype, loras, weights, progress, preloaded) for dtype in dtypes.values()]

    report = {
        "family": family.name,
        "model_path": args.model_path,
        "device": args.device,
        "versions": library_versions(),
        "weights": weights,
        "files": [_file_report(lora) for lora in loras],
        "results": results,
        "ok": all(r["ok"] for r in results),
    }
    print(_format_check(report))
    if args.json:
        _write_json(report, args.json)
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _write_json(report: dict[str, Any], path: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(_json_safe(report), fh, indent=2, allow_nan=False)
            fh.write("\n")
    except OSError as exc:
        raise ParityInputError(f"cannot write the JSON report ({exc.strerror})", path=path) from None


# ---------------------------------------------------------------- hotswap


HOTSWAP_DESCRIPTION = """\
Hotswap LoRA files one after another into a compiled denoiser, the way diffusers documents it:
enable_lora_hotswap(target_rank=...) before the first load, load the first --lora, compile and
warm up, then load every next --lora with hotswap=True into the same adapter. Per swap: did dynamo
recompile, did diffusers refuse the swap, does the output match a fresh eager load of that file
alone (and, at model level, the float64 reference merge of it), the swap time against the first
load + compile, and the change in the denoiser's parameter count.

The first file is loaded before compiling; the later ones are swapped into its adapter, so they
must target the same modules or a subset of them. diffusers refuses a file with extra modules
("unexpected keys") and then deletes the adapter, so the files after a refused one are not swapped.

Only the denoiser (unet or transformer) part of each file is swapped: diffusers refuses to hotswap
text encoders. At --level model (the default, faster: one denoiser step per output) files are
loaded with the denoiser's load_lora_adapter(prefix=...), which ignores other components' keys and
reads only the diffusers layout. At --level pipeline they go through load_lora_weights (any layout)
and must hold denoiser keys only.

--target-rank defaults to the largest denoiser rank in the files. A smaller one is bad input: PEFT
would have to grow the padded LoRA tensors on that swap (torch.utils.swap_tensors), which changes
their shapes and always recompiles.

Exit codes: 0 no recompile, no refusal and every output within its budget; 1 otherwise; 2 bad input."""


def add_hotswap_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_arguments(parser)
    parser.add_argument(
        "--lora",
        action="append",
        required=True,
        metavar="FILE",
        help=".safetensors LoRA file, at least two: the first is loaded before compiling, the rest swapped in order",
    )
    parser.add_argument(
        "--target-rank",
        type=_positive_int,
        metavar="N",
        help="rank every LoRA layer is padded to (default: the largest denoiser rank in the files)",
    )
    parser.add_argument(
        "--level",
        default="model",
        help="model: the denoiser's own loader and one denoiser step (default); pipeline: load_lora_weights "
        "and one tiny image",
    )
    parser.add_argument(
        "--compile-backend",
        metavar="B",
        help="eager, aot_eager or inductor (default: eager on cpu, inductor on cuda)",
    )
    parser.add_argument("--compile-mode", metavar="M", help="torch.compile mode, inductor only (default: none)")
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16 (default: float32)")
    _add_pickle_argument(parser)
    _add_run_arguments(parser)


@dataclass
class _HotswapPlan:
    """Validated inputs: everything ``run_hotswap`` needs before it compiles anything."""

    family: Any
    dtype: Any
    level: str
    backend: str
    mode: str | None
    target_rank: int
    loras: list[Any]  # parity.lora.formats.LoraFile, one per --lora


def _check_level(level: str) -> str:
    from parity.checks.hotswap import LEVELS

    if level not in LEVELS:
        raise ParityInputError(f"unknown level {level!r}; choose from {', '.join(LEVELS)}")
    return level


def _compile_options(backend: str | None, mode: str | None, device: str) -> tuple[str, str | None]:
    from parity.checks.dynamo import BACKENDS, default_backend

    backend = backend or default_backend(device)
    if backend not in BACKENDS:
        raise ParityInputError(f"unknown compile backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if mode is None:
        return backend, None
    if backend != "inductor":
        # compile_in_place drops the mode for other backends; say so instead of ignoring it.
        raise ParityInputError(f"--compile-mode {mode!r} applies to the inductor backend only, not {backend!r}")
    import torch._inductor

    modes = list(torch._inductor.list_mode_options())
    if mode not in modes:
        raise ParityInputError(f"unknown compile mode {mode!r}; choose from {', '.join(modes)}")
    return backend, mode


def _denoiser_rank(lora: Any, denoiser: str) -> int:
    return max(m.rank for (component, _), m in lora.modules.items() if component == denoiser)


def _read_hotswap_files(family: Any, dtype: Any, level: str, args: argparse.Namespace) -> list[Any]:
    """Parse every file against the model, and refuse what the chosen loader cannot swap."""
    from parity.lora.formats import read_lora

    pipe = _build(family, dtype, args)
    components = family.components(pipe)
    loras = [read_lora(path, components, strict=False, allow_pickle=args.allow_pickle) for path in args.lora]
    del pipe, components
    denoiser = family.denoiser
    for lora in loras:
        if denoiser not in lora.components():
            raise ParityInputError(f"no {denoiser} keys: only the {denoiser} part of a file can be hotswapped",
                                   path=lora.path)
        others = [c for c in lora.components() if c != denoiser]
        if level == "model" and lora.layout != "diffusers":
            # load_lora_adapter converts no layout: a kohya file would load no adapter at all.
            raise ParityInputError(f"{lora.layout} layout: --level model reads the diffusers layout only "
                                   "(use --level pipeline)", path=lora.path)
        if level == "pipeline" and others:
            raise ParityInputError(f"has {', '.join(others)} keys: diffusers cannot hotswap text encoders "
                                   f"(use --level model, which swaps only the {denoiser} part)", path=lora.path)
    return loras


def _target_rank(requested: int | None, loras: Sequence[Any], denoiser: str) -> int:
    ranks = [_denoiser_rank(lora, denoiser) for lora in loras]
    needed = max(ranks)
    if requested is None:
        return needed
    if requested < needed:
        widest = loras[ranks.index(needed)].path
        raise ParityInputError(
            f"--target-rank {requested} is below the largest {denoiser} rank in the files ({needed}, in {widest}): "
            f"PEFT would grow the padded LoRA tensors on that swap, which always recompiles; use {needed} or more"
        )
    return requested


def _plan_hotswap(args: argparse.Namespace) -> _HotswapPlan:
    """Every input error surfaces here, before the first compile."""
    from parity.tolerances import dtype_from_name
    from parity.zoo import get_family

    family = get_family(args.family)
    if len(args.lora) < 2:
        raise ParityInputError(f"hotswap needs at least two --lora files (got {len(args.lora)}): "
                               "the first is loaded and compiled, the others are swapped in")
    _check_device(args.device)
    dtype = dtype_from_name(args.dtype)
    level = _check_level(args.level)
    backend, mode = _compile_options(args.compile_backend, args.compile_mode, args.device)
    _check_json_target(args.json, args.overwrite)
    quiet_libraries()
    warnings.filterwarnings("ignore")  # the CLI's stderr carries progress and at most one error line
    loras = _read_hotswap_files(family, dtype, level, args)
    target_rank = _target_rank(args.target_rank, loras, family.denoiser)
    return _HotswapPlan(family, dtype, level, backend, mode, target_rank, loras)


def _one_line_refusal(error: Exception, shorten: bool) -> str:
    """The refusal as one line; ``shorten`` names only the first unexpected keys (JSON keeps them all)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    head, sep, keys = text.partition("unexpected keys found: ")
    if not shorten or not sep:
        return text
    names = keys.rstrip(".").split(", ")
    more = len(names) - SHOWN_UNMATCHED
    return head + sep + ", ".join(names[:SHOWN_UNMATCHED]) + (f" (+{more} more)" if more > 0 else "")


def _output_fields(check: Any) -> dict[str, Any]:
    """The output check's numbers; one place to follow a change in ``SwapOutputReport``."""
    if check is None:  # refused, or the call never ran
        return {"vs_fresh": None, "vs_fresh_budget": None, "forward_error": None, "errors": {}, "budgets": {}}
    return {
        "vs_fresh": check.vs_fresh,
        "vs_fresh_budget": check.fresh_budget,
        # e_fwd: how far the dtype's own rounding moves a fresh load from float64; informational, no budget.
        "forward_error": check.forward_error,
        # float64: diffusers' LoRA forward of a fresh load against our reference merge of the file.
        "errors": {"vs_reference": check.vs_reference},
        "budgets": {"vs_reference": check.reference_budget},
    }


def _swap_record(
    path: str, result: Any, check: Any, footprint: tuple[int, int], baseline: tuple[int, int]
) -> dict[str, Any]:
    watch = result.watch
    record = {
        "path": path,
        "recompiled": watch.recompiled,
        "new_graphs": watch.new_graphs,
        "reasons": list(watch.reasons),
        "refused": None if result.error is None else _one_line_refusal(result.error, shorten=False),
        "swap_seconds": result.swap_seconds,
        "call_seconds": result.call_seconds,
        **_output_fields(check),
        "params_delta": footprint[0] - baseline[0],
        "bytes_delta": footprint[1] - baseline[1],
    }
    failures = []
    if watch.recompiled:
        failures.append(f"recompiled: {watch.summary()}")
    if result.error is not None:
        failures.append(f"refused: {_one_line_refusal(result.error, shorten=True)}")
    if check is not None:
        failures += check.failures()
    if record["params_delta"] > 0:
        # Growth means PEFT replaced a padded tensor by a wider one: the shapes the graph guards on changed.
        failures.append(f"parameters grew by {record['params_delta']} ({record['bytes_delta']} bytes)")
    record["failures"] = failures
    record["ok"] = not failures
    return record


def _swap_one(session: Any, path: str, baseline: tuple[int, int]) -> dict[str, Any]:
    from diffusers.utils import logging as diffusers_logging

    from parity.checks import hotswap as hs

    # diffusers logs a refused swap at error level (twice) before raising; the report says it once.
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    try:
        result = hs.swap(session, path)
    finally:
        diffusers_logging.set_verbosity(level)
    check = None if result.output is None else hs.check_swap_output(session, path, result.output)
    return _swap_record(path, result, check, hs.parameter_footprint(session.denoiser), baseline)


def _run_swaps(plan: _HotswapPlan, args: argparse.Namespace) -> dict[str, Any]:
    from parity.checks import hotswap as hs

    first, rest = args.lora[0], args.lora[1:]
    progress = _Progress(total=len(args.lora), enabled=not args.quiet)
    with progress.step(f"load {os.path.basename(first)}, compile ({plan.backend}), warm up"):
        session = hs.start(plan.family, first, plan.target_rank, level=plan.level, dtype=plan.dtype,
                           device=args.device, backend=plan.backend, mode=plan.mode, model_path=args.model_path)
    baseline = hs.parameter_footprint(session.denoiser)
    swaps: list[dict[str, Any]] = []
    for i, path in enumerate(rest):
        with progress.step(f"swap {os.path.basename(path)}, check output") as outcome:
            swaps.append(_swap_one(session, path, baseline))
            outcome(swaps[-1]["ok"])
        if hs.ADAPTER not in getattr(session.denoiser, "peft_config", {}):
            # diffusers deletes the adapter when a hotswap fails: nothing is left to swap into.
            return _hotswap_report(plan, args, session.compile_seconds, baseline, swaps, rest[i + 1:])
    return _hotswap_report(plan, args, session.compile_seconds, baseline, swaps, [])


def _hotswap_report(plan: _HotswapPlan, args: argparse.Namespace, compile_seconds: float,
                    baseline: tuple[int, int], swaps: list[dict[str, Any]], skipped: list[str]) -> dict[str, Any]:
    return {
        "family": plan.family.name,
        "model_path": args.model_path,
        "level": plan.level,
        "backend": plan.backend,
        "mode": plan.mode,
        "target_rank": plan.target_rank,
        "device": args.device,
        "dtype": str(plan.dtype).removeprefix("torch."),
        "versions": library_versions(),
        "first": args.lora[0],
        "ranks": {lora.path: _denoiser_rank(lora, plan.family.denoiser) for lora in plan.loras},
        "compile_seconds": compile_seconds,
        "parameters": baseline[0],
        "swaps": swaps,
        "skipped": skipped,
        "ok": all(s["ok"] for s in swaps) and not skipped,
    }


def _fmt_error(value: float | None, budget: float | None) -> str:
    if value is None or budget is None:
        return "-"
    return f"{value:.3g} (<= {budget:.3g})"


def _recompile_cell(swap: dict[str, Any]) -> str:
    if not swap["recompiled"]:
        return "no"
    # error_on_recompile stops dynamo before it builds the graph, so a caught recompile counts 0 graphs.
    return f"yes ({swap['new_graphs']} new graph(s))" if swap["new_graphs"] else "yes"


def _format_swaps(report: dict[str, Any]) -> list[str]:
    compile_seconds = report["compile_seconds"]
    rows = [["file", "rank", "recompile", "swap + call", "vs load+compile", "vs fresh load",
             "float64 LoRA vs our merge", "params", "result"]]
    for s in report["swaps"]:
        seconds = s["swap_seconds"] + s["call_seconds"]
        timed = seconds > 0 and s["refused"] is None and not s["recompiled"]
        speedup = f"{compile_seconds / seconds:.0f}x faster" if timed else "-"
        reference = _fmt_error(s["errors"].get("vs_reference"), s["budgets"].get("vs_reference"))
        rows.append([
            s["path"], str(report["ranks"][s["path"]]),
            _recompile_cell(s),
            f"{seconds:.2f} s" if s["refused"] is None else "-", speedup,
            _fmt_error(s["vs_fresh"], s["vs_fresh_budget"]), reference,
            f"{s['params_delta']:+d}", "ok" if s["ok"] else ("REFUSED" if s["refused"] else "FAIL"),
        ])
    return _table(rows)


def _format_hotswap(report: dict[str, Any]) -> str:
    v = report["versions"]
    mode = f", mode {report['mode']}" if report["mode"] else ""
    header = [
        f"lora-parity hotswap: family {report['family']}, model {report['model_path'] or 'tiny (built-in, seed 0)'}, "
        f"level {report['level']}, device {report['device']}, dtype {report['dtype']}",
        f"versions: torch {v['torch']}, diffusers {v['diffusers']}, peft {v['peft']}, transformers {v['transformers']}",
        f"first: {report['first']} (rank {report['ranks'][report['first']]}), target rank {report['target_rank']}: "
        f"loaded, compiled ({report['backend']}{mode}) and warmed up in {report['compile_seconds']:.1f} s; "
        f"{report['parameters']} parameters",
    ]
    lines = [*header, "", "Swaps (outputs: max |difference| (<= its budget); params: change since the first load)",
             *_format_swaps(report)]
    failures = [f"  {s['path']}: {failure}" for s in report["swaps"] for failure in s["failures"]]
    if report["skipped"]:
        skipped = ", ".join(report["skipped"])
        failures.append(f"  not swapped (diffusers deleted the adapter after the refusal): {skipped}")
    if failures:
        lines += ["", "Failures", *failures]
    verdict = "PASS: no recompile, no refusal, every output within budget" if report["ok"] else (
        "FAIL: a hotswap parity check failed"
    )
    return "\n".join([*lines, "", verdict])


def _renamed(value: Any, names: dict[str, str]) -> Any:
    """``value`` with every occurrence of each key of ``names`` replaced by its value, in every string."""
    if isinstance(value, str):
        for old, new in names.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {_renamed(k, names): _renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    return value


def run_hotswap(args: argparse.Namespace) -> int:
    """Validate, start a compiled session with the first file, swap each next one in and check it."""
    from parity.checks.dynamo import reset
    from parity.lora.formats import is_pickle_path, safetensors_copy

    with tempfile.TemporaryDirectory(prefix="lora-parity-") as scratch:
        # The session loads, re-reads and labels files by path: an allowed pickle goes in as a
        # safetensors copy of its weights-only-read tensors, so nothing unpickles it; the report
        # then names the original again.
        originals = {safetensors_copy(p, scratch, f"{i}-"): p for i, p in enumerate(args.lora)
                     if args.allow_pickle and is_pickle_path(p)}
        copies = {p: c for c, p in originals.items()}
        args.lora = [copies.get(p, p) for p in args.lora]
        try:
            plan = _plan_hotswap(args)
            _strict_float32(args.device)
            try:
                report = _renamed(_run_swaps(plan, args), originals)
            finally:
                reset()  # an in-process caller's next compiled model must not meet this one's guards
        except ParityInputError as exc:
            raise ParityInputError(_renamed(exc.message, originals), path=_renamed(exc.path, originals),
                                   key=exc.key) from None
        finally:
            args.lora = [originals.get(p, p) for p in args.lora]
    print(_format_hotswap(report))
    if args.json:
        _write_json(report, args.json)
    return EXIT_OK if report["ok"] else EXIT_FAILED


# ---------------------------------------------------------------- families


def run_families(args: argparse.Namespace) -> int:
    from parity.zoo import FAMILIES

    rows = [["family", "pipeline", "components", "layouts"]]
    for family in FAMILIES.values():
        rows.append([family.name, family.pipeline_class, ",".join(family.lora_components), ",".join(family.layouts)])
    print("\n".join(_table(rows, indent="")))
    return EXIT_OK


# ---------------------------------------------------------------- golden


GOLDEN_DESCRIPTION = """\
Render the golden cases (parity/golden/cases.py: base, LoRA at 0.5/1.0, fused, two adapters, a per-step
schedule, kohya and LoCon files) and compare them with the stored 8-bit images of this device class,
or rewrite those images.

update  renders each selected case twice, refuses non-finite or differing runs, measures its float64
        error, writes the PNG and merges its manifest entry atomically, then verifies it; baselines of
        cases not selected are never touched.
verify  compares; on a mismatch writes <report-dir>/artifacts/<case>.png (expected | actual |
        difference) and <report-dir>/index.html. A missing baseline fails and names the command.

Exit codes: 0 every case passes, 1 a case failed or has no baseline, 2 bad input."""


def add_golden_arguments(parser: argparse.ArgumentParser) -> None:
    from parity.golden.mismatch import DEFAULT_REPORT_DIR
    from parity.golden.store import DEFAULT_GOLDEN_DIR

    parser.add_argument("action", choices=("update", "verify"))
    parser.add_argument("--family", action="append", type=_comma_list, metavar="F",
                        help="only these families (repeatable or comma-separated; default: all)")
    parser.add_argument("--golden-dir", default=DEFAULT_GOLDEN_DIR, metavar="DIR",
                        help=f"golden image root (default: {DEFAULT_GOLDEN_DIR})")
    parser.add_argument("--golden-class", metavar="CLASS",
                        help="device class folder (default: this device's, e.g. cpu or cuda-sm90)")
    parser.add_argument("--report-dir", default=None, metavar="DIR",
                        help="where mismatch images and index.html go (default: a new run folder "
                             f"{DEFAULT_REPORT_DIR}/<time>-<id>/, made only on a mismatch; "
                             f"{DEFAULT_REPORT_DIR}/latest)")
    _add_overwrite_argument(parser)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def run_golden(args: argparse.Namespace) -> int:
    from pathlib import Path

    from parity.golden import cases as golden_cases
    from parity.golden import store as golden_store
    from parity.golden import verify
    from parity.runs.folders import adopt
    from parity.zoo import get_family

    families = [get_family(f).name for group in (args.family or []) for f in group]
    _check_device(args.device)
    quiet_libraries()
    warnings.filterwarnings("ignore")
    _strict_float32(args.device)
    update = args.action == "update"
    # An update stages every baseline and commits them together: a killed run leaves the old ones.
    store = golden_store.GoldenStore(Path(args.golden_dir), args.golden_class or golden_store.device_class(args.device),
                               staging=golden_store.new_update_token() if update else None)
    cases = golden_cases.cases_for(families)
    report_dir = _golden_report_dir(args)
    progress = _Progress(total=len(cases), enabled=not args.quiet)
    failed = []
    try:
        for case in cases:
            with progress.step(f"{args.action} {case.id}") as outcome:
                try:
                    result = verify.run_case(store, case, report_dir, update, args.device)
                except golden_store.GoldenError as exc:  # an update refused (non-finite or unreproducible render)
                    result = verify.CaseOutcome(case.id, False, [str(exc)])
                outcome(result.ok)
            shown = [line for line in result.lines if "baseline written" not in line] if result.ok else result.lines[:1]
            print(("ok    " if result.ok else "FAIL  ") + "\n      ".join(shown[0].splitlines()[:1] + shown[1:]))
            if not result.ok:
                failed.append(result)
    except BaseException:
        store.discard_update()
        raise
    if update:
        store.commit_update()
    for result in failed:
        print("\n" + "\n".join(result.lines))
    print(f"\n{len(cases) - len(failed)} passed, {len(failed)} failed ({store.dir})")
    if args.report_dir is None and adopt(report_dir, args.command_line):
        print(f"mismatch report: {report_dir / 'index.html'}")
    return EXIT_OK if not failed else EXIT_FAILED


def _golden_report_dir(args: argparse.Namespace) -> Any:
    """A named --report-dir is claimed now; the default run folder is only named, since a run with no
    mismatch writes nothing there (``adopt`` marks it if one did)."""
    from parity.golden.mismatch import DEFAULT_REPORT_DIR
    from parity.runs.folders import OUTPUTS, claim_dir, fresh_run_dir

    if args.report_dir is None:
        return fresh_run_dir(DEFAULT_REPORT_DIR, args.command_line, create=False)
    return claim_dir(args.report_dir, OUTPUTS["golden-report"], args.overwrite, command=args.command_line)


def _output_dir(args: argparse.Namespace, writer: str, default_root: str | None = None) -> Any:
    """``--out``: a named folder is claimed for ``writer`` (refused if it holds a previous run's output
    unless --overwrite); without one, a new run folder under ``default_root`` (parity/runs/folders.py)."""
    from parity.runs.folders import OUTPUTS, claim_dir, fresh_run_dir

    if args.out is None:
        return fresh_run_dir(default_root, args.command_line)
    return claim_dir(args.out, OUTPUTS[writer], args.overwrite, command=args.command_line)


# ---------------------------------------------------------------- report and compare (benchmarks)


REPORT_DESCRIPTION = """\
Write the benchmark report of one pytest-benchmark run (--benchmark-json): report.md, a
self-contained index.html and plots/*.png (latency per mode and dtype with IQR bars, ratio to the
baseline mode beside the FLOP floor, LoRA operation times, peak memory). Every fused,
fused+unloaded or compiled-fused ratio above the fused flag is marked and listed at the top.

Exit codes: 0 report written, 2 bad input."""


BENCH_ROOT = os.path.join("reports", "bench")


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark-json", required=True, metavar="RUN.json", help="pytest-benchmark JSON file")
    parser.add_argument("--junit", metavar="JUNIT.xml", help="pytest --junitxml file: adds test outcome counts")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"output folder (default: a new run folder {BENCH_ROOT}/<time>-<id>/; "
                             f"{BENCH_ROOT}/latest)")
    _add_overwrite_argument(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")


def run_report(args: argparse.Namespace) -> int:
    from parity.bench.results import read_run
    from parity.runs.junit import read_junit
    from parity.bench.report import write_report

    run = read_run(args.benchmark_json)
    junit = read_junit(args.junit) if args.junit else None
    report = write_report(run, _output_dir(args, "bench-report", BENCH_ROOT), junit, progress=not args.quiet)
    print(f"wrote {report.html}, {report.markdown} and {len(report.plots)} plot(s) for {len(run.records)} benchmark(s)")
    for flag in report.flags:
        print(f"  flagged: {flag.record.fullname}: {flag.record.info.mode} ratio {flag.ratio:.3f}")
    return EXIT_OK


COMPARE_DESCRIPTION = """\
Compare two pytest-benchmark runs benchmark by benchmark (matched by fullname) and gate on
regressions. --fail-on mirrors pytest-benchmark's --benchmark-compare-fail: STAT:N% fails when
new/old grows by more than N%, STAT:X or STAT:Xs when new - old exceeds X seconds (STAT: min, max,
mean, median, iqr, stddev). ratio:N% compares each mode's within-run ratio to its baseline mode
(compiled modes to compiled-base, others to base) between the runs: robust on noisy runners where
every absolute time moves together. Without --fail-on nothing counts as a regression.

Runs from different devices are refused unless --allow-cross-device.

Exit codes: 0 no regression beyond the gates, 1 a regression, 2 bad input."""


def _fail_on(text: str) -> Any:
    from parity.bench.compare import parse_fail_on

    try:
        return parse_fail_on(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD.json", help="the reference run")
    parser.add_argument("new", metavar="NEW.json", help="the run under test")
    parser.add_argument("--fail-on", action="append", type=_fail_on, default=[], metavar="GATE",
                        help="STAT:N%%, STAT:SECONDS or ratio:N%% (repeatable), e.g. median:10%%")
    parser.add_argument("--allow-cross-device", action="store_true", help="compare runs from different devices")
    parser.add_argument("--out", metavar="DIR", help="also write the table as DIR/compare.md")
    _add_overwrite_argument(parser)


def run_compare(args: argparse.Namespace) -> int:
    from parity.bench.results import read_run
    from parity.bench.report import markdown_table
    from parity.bench.compare import compare_runs, table_cells, verdict_line

    old, new = read_run(args.old), read_run(args.new)
    out = _output_dir(args, "compare") if args.out else None  # refused before the table, not after it
    comparison = compare_runs(old, new, args.fail_on, allow_cross_device=args.allow_cross_device)
    cells = table_cells(comparison)
    verdict = verdict_line(comparison)
    print(f"{args.old} -> {args.new} ({'; '.join(comparison.new_devices)})")
    print("\n".join(_table(cells)))
    print(verdict)
    if out is not None:
        md = [f"# {args.old} -> {args.new}", "", *markdown_table(cells), "", verdict]
        (out / "compare.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return EXIT_OK if comparison.ok else EXIT_FAILED


# ---------------------------------------------------------------- gate (upgrade gating)


GATE_DESCRIPTION = """\
One verdict on an upgrade from two results bundles (tools/gate.sh old|new, or tox -e gate-old and
gate-new): checks that passed before and fail now, checks that no longer run, golden images that
moved (with their side-by-side PNGs), parity errors that grew in ULPs, and benchmarks beyond the
gate. Writes gate.md and gate.html to --out.

Exit codes: 0 no regression, 1 a regression, 2 bad input."""

# Within-run ratios (fused/base, unfused/base) move little between runs on one machine, while
# absolute times on a shared runner drift together by tens of percent (docs/benchmarks/README.md).
DEFAULT_GATE_BENCH = "ratio:25%"
GATE_ROOT = os.path.join("reports", "gate")


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD_BUNDLE", help="results bundle of the current versions")
    parser.add_argument("new", metavar="NEW_BUNDLE", help="results bundle of the candidate versions")
    parser.add_argument("--bench-fail-on", action="append", type=_fail_on, default=None, metavar="GATE",
                        help=f"benchmark gate as for `compare` (repeatable; default {DEFAULT_GATE_BENCH})")
    parser.add_argument("--allow-cross-device", action="store_true", help="bundles from different devices")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"gate.md and gate.html (default: a new run folder {GATE_ROOT}/<time>-<id>/; "
                             f"{GATE_ROOT}/latest)")
    _add_overwrite_argument(parser)


def run_gate(args: argparse.Namespace) -> int:
    from parity.runs.gate import judge, read_bundle
    from parity.runs.gatereport import terminal_lines, write_gate_report

    gates = args.bench_fail_on if args.bench_fail_on is not None else [_fail_on(DEFAULT_GATE_BENCH)]
    old, new = read_bundle(args.old), read_bundle(args.new)
    out = _output_dir(args, "gate", GATE_ROOT)
    verdict = judge(old, new, gates, args.allow_cross_device)
    print("\n".join(terminal_lines(verdict)))
    md, page = write_gate_report(verdict, out)
    print(f"report: {page} ({md})")
    return EXIT_OK if verdict.ok else EXIT_FAILED


# ---------------------------------------------------------------- agree (determinism)

AGREE_DESCRIPTION = """\
Two runs of the suite on one machine (each a folder with junit.xml from --junitxml and
parity/summary.json from --parity-report; tools/repeat.sh makes both, the second in random order)
must agree exactly: the same tests, the same outcomes, every measured error bit-for-bit the same.
Exit 0 when they do, 1 with the differences when not, 2 on unreadable input.
"""


def add_agree_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("first", metavar="RUN1", help="the first run folder")
    parser.add_argument("second", metavar="RUN2", help="the second run folder")


def run_agree(args: argparse.Namespace) -> int:
    from parity.runs.agree import agree, format_agreement

    result = agree(args.first, args.second)
    print(format_agreement(result, args.first, args.second))
    return EXIT_OK if result.identical else EXIT_FAILED


# ---------------------------------------------------------------- registry and entry point


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


# The one place subcommands are registered.
SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("check", "merge parity and unfuse drift of LoRA files", add_check_arguments, run_check,
               CHECK_DESCRIPTION),
    Subcommand("hotswap", "hotswap LoRA files into a compiled model: recompiles, refusals, output vs a fresh load",
               add_hotswap_arguments, run_hotswap, HOTSWAP_DESCRIPTION),
    Subcommand("golden", "update or verify the golden images of the seeded pipeline cases", add_golden_arguments,
               run_golden, GOLDEN_DESCRIPTION),
    Subcommand("families", "list the model families, their LoRA components and file layouts", _no_arguments,
               run_families),
    Subcommand("report", "markdown/HTML report with plots of a pytest-benchmark run", add_report_arguments,
               run_report, REPORT_DESCRIPTION),
    Subcommand("compare", "compare two pytest-benchmark runs and gate on regressions", add_compare_arguments,
               run_compare, COMPARE_DESCRIPTION),
    Subcommand("gate", "one verdict on an upgrade from the old and new results bundles", add_gate_arguments,
               run_gate, GATE_DESCRIPTION),
    Subcommand("agree", "do two runs of the suite give identical outcomes and numbers (determinism)",
               add_agree_arguments, run_agree, AGREE_DESCRIPTION),
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Parity checks for LoRA in diffusers + PEFT.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in SUBCOMMANDS:
        p = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed as one line)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    # Run folders record the command that made them (parity/runs/folders.py).
    args.command_line = [PROG, *(sys.argv[1:] if argv is None else argv)]
    try:
        return args.run(args)
    except ParityInputError as exc:
        _print_error(str(exc))
        return EXIT_BAD_INPUT

