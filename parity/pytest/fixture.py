"""What the ``lora_parity`` fixture hands a user's test (parity/pytest/userplugin.py declares it).

Each method runs the one implementation the CLI runs, and its report's ``.text`` is what the CLI prints:

- ``check``: parity.checks.check (plan_check, run_check), formatted by parity/cli/check.py's format_check;
  with ``quantization=``, parity/quant/check.py (run_quant_check) from the request parity/cli/quantized.py
  builds, formatted by its format_quant, as ``lora-parity check --quantization`` does;
- ``hotswap``: parity/checks/swaps.py (plan_hotswap, run_hotswap), formatted by parity/cli/hotswap.py;
- ``golden``: a seeded render of the files compared with a PNG under the test's golden folder, through
  parity/golden's store, thresholds and mismatch images (parity/pytest/usergolden.py).

Every call runs inside parity.globalstate.isolated (seeds, torch settings put back afterwards), with the
libraries' warnings silenced for its duration only. Bad input (a missing file, an unknown family) fails
the test with the CLI's one line; a device this machine lacks skips it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Report:
    """One check's outcome: ``ok`` its verdict, ``text`` the report as the CLI prints it, ``report`` the
    check's own report object (CheckReport, QuantReport, HotswapReport, GoldenResult) for finer asserts."""

    ok: bool
    text: str
    report: Any = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.text


@contextlib.contextmanager
def _running(device: str) -> Iterator[str]:
    """The checks' global-state isolation and quiet, scoped to one call; the device resolved, or a skip."""
    from parity.devices import NoDevice, resolve
    from parity.errors import ParityInputError
    from parity.globalstate import isolated
    from parity.quiet import quiet_libraries

    try:
        resolved = resolve(device)
    except NoDevice:
        pytest.skip(f"lora_parity: device {device}: not on this machine")
    except ParityInputError as exc:
        pytest.fail(f"lora_parity: bad input: {exc}", pytrace=False)
    with warnings.catch_warnings(), isolated(seed=0):
        quiet_libraries()  # its warning filters end with catch_warnings; the loggers stay at error
        warnings.simplefilter("ignore")
        try:
            yield resolved
        except ParityInputError as exc:  # the CLI's exit 2: one line naming the file or option
            pytest.fail(f"lora_parity: bad input: {' '.join(str(exc).split())}", pytrace=False)


def _reported(run: Callable[[], Any], format_report: Callable[[Any], str]) -> Report:
    """The check's report as the CLI prints it; diffusers refusing a file the reader found valid is the
    CLI's one FAIL line (exit 1 there), a verdict on diffusers and not bad input."""
    from parity.errors import LoaderRefused

    try:
        report = run()
    except LoaderRefused as exc:
        return Report(False, f"FAIL: {' '.join(str(exc).split())}", exc)
    return Report(report.ok, format_report(report), report)


@dataclass
class LoraParity:
    """The fixture's value: one per test. ``device``: --lora-parity-device; ``golden_root``: where
    ``golden()`` keeps its images; ``update_golden``: --lora-parity-update-golden."""

    device: str = "cpu"
    golden_root: Path = Path("lora_parity_golden")
    update_golden: bool = False
    base: Path = Path(".")  # the test file's folder: relative paths not found in the working folder are looked up here
    mismatch_dir: Path | None = None  # where a golden mismatch writes expected | actual | difference

    @classmethod
    def for_test(cls, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 golden_dir: str) -> LoraParity:
        """The options of this run; ``golden_dir``: the golden root's name beside the test file."""
        config = request.config
        base = Path(request.path).parent
        root = config.getoption("--lora-parity-golden-dir")
        return cls(device=config.getoption("--lora-parity-device"),
                   golden_root=Path(root) if root else base / golden_dir,
                   update_golden=bool(config.getoption("--lora-parity-update-golden")), base=base,
                   mismatch_dir=tmp_path_factory.getbasetemp() / "lora-parity-golden-mismatches")

    def _path(self, path: str | os.PathLike[str]) -> str:
        """As the CLI reads it (relative to the working folder); failing that, relative to the test file."""
        if os.path.isabs(path) or os.path.exists(path) or not (self.base / path).exists():
            return str(path)
        return str(self.base / path)

    def _files(self, loras: Sequence[str | os.PathLike[str]] | str | os.PathLike[str]) -> tuple[str, ...]:
        if isinstance(loras, (str, os.PathLike)):
            loras = [loras]
        return tuple(self._path(p) for p in loras)

    def _model(self, model_path: str | os.PathLike[str] | None, variant: str | None,
               model_config: str | os.PathLike[str] | None) -> Any:
        from parity.zoo.source import model_path as with_options

        return with_options(None if model_path is None else self._path(model_path), variant,
                            None if model_config is None else self._path(model_config))

    def check(self, family: str, loras: Sequence[str | os.PathLike[str]] | str, *,
              model_path: str | os.PathLike[str] | None = None, dtypes: Sequence[str] = ("float32",),
              scale: float = 1.0, weights: Sequence[float] | None = None, cycles: int = 1,
              device: str | None = None, allow_pickle: bool = False, expert: str | None = None,
              quantization: str | None = None, variant: str | None = None,
              model_config: str | os.PathLike[str] | None = None) -> Report:
        """``lora-parity check``: the files fused into ``family``'s pipeline (the tiny model without
        ``model_path``) against the float64 reference merge per dtype, then fuse/unfuse drift and the
        unfused state. With ``quantization`` (a parity/quant/registry.py name), the quantized check."""
        if isinstance(dtypes, str):
            dtypes = [d.strip() for d in dtypes.split(",")]
        with _running(device or self.device) as dev:
            files = self._files(loras)
            if quantization is not None:
                from parity.cli.arguments import model_source
                from parity.cli.quantized import format_quant, quant_request
                from parity.quant.check import run_quant_check

                # the CLI's own request: one compute dtype, a GGUF file as model_path with model_config the rest
                args = argparse.Namespace(
                    family=family, lora=list(files), dtype=list(dtypes), scale=scale, cycles=cycles,
                    weights=None if weights is None else list(weights), device=dev, allow_pickle=allow_pickle,
                    quantization=quantization, variant=variant,
                    model_path=None if model_path is None else self._path(model_path),
                    model_config=None if model_config is None else self._path(model_config))
                return _reported(lambda: run_quant_check(quant_request(args, model_source(args))), format_quant)
            from parity.checks.check import CheckRequest, plan_check, run_check
            from parity.cli.check import format_check

            request = CheckRequest(
                family=family, loras=files, dtypes=tuple(dtypes), lora_scale=scale,
                weights=None if weights is None else tuple(weights), cycles=cycles, device=dev,
                model_path=self._model(model_path, variant, model_config), allow_pickle=allow_pickle, expert=expert)
            return _reported(lambda: run_check(plan_check(request)), format_check)

    def hotswap(self, family: str, loras: Sequence[str | os.PathLike[str]], *,
                model_path: str | os.PathLike[str] | None = None, target_rank: int | None = None,
                level: str = "model", compile_backend: str | None = None, compile_mode: str | None = None,
                dtype: str = "float32", device: str | None = None, allow_pickle: bool = False,
                expert: str | None = None, quantization: str | None = None, variant: str | None = None,
                model_config: str | os.PathLike[str] | None = None) -> Report:
        """``lora-parity hotswap``: the first file loaded and compiled, each next one hotswapped into its
        adapter; per swap no recompile, no refusal, and the output against a fresh load of that file."""
        from parity.checks.swaps import HotswapRequest, plan_hotswap, run_hotswap
        from parity.cli.hotswap import format_hotswap

        with _running(device or self.device) as dev:
            request = HotswapRequest(
                family=family, loras=self._files(loras), target_rank=target_rank, level=level,
                compile_backend=compile_backend, compile_mode=compile_mode, dtype=dtype, device=dev,
                model_path=self._model(model_path, variant, model_config), allow_pickle=allow_pickle,
                expert=expert, quantization=quantization)
            return _reported(lambda: run_hotswap(plan_hotswap(request)), format_hotswap)

    def golden(self, family: str, loras: Sequence[str | os.PathLike[str]] | str, name: str, *,
               model_path: str | os.PathLike[str] | None = None, weights: Sequence[float] | None = None,
               scale: float = 1.0, dtype: str = "float32", seed: int = 0, steps: int | None = None,
               device: str | None = None, variant: str | None = None,
               model_config: str | os.PathLike[str] | None = None) -> Report:
        """A seeded render of ``family``'s pipeline with the files loaded (``weights`` per file,
        ``scale`` as the LoRA scale), compared with ``<golden root>/<device class>/<family>-<name>.png``
        within the golden thresholds derived from its float64 error. With --lora-parity-update-golden
        the baseline is (re)written and the call passes; a missing one is written and the call fails,
        saying so (as pytest-regressions does): review the image, commit it, rerun."""
        from parity.pytest.usergolden import golden

        with _running(device or self.device) as dev:
            files = self._files(loras)
            return Report(*golden(
                family, files, name, root=self.golden_root, update=self.update_golden, device=dev,
                model_path=self._model(model_path, variant, model_config),
                weights=None if weights is None else tuple(weights), scale=scale, dtype=dtype, seed=seed,
                steps=steps, mismatch_dir=self.mismatch_dir))
