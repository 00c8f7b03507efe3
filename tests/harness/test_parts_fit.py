"""The sizes each family declares must agree (Family.fits) are real reads that hold on the family's
own pipeline, and each one fails when one side is changed: no declared fit is vacuous."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from parity.zoo import FAMILIES, build_pipeline

FITS = [(name, i) for name, fam in FAMILIES.items() for i in range(len(fam.fits))]


@pytest.fixture(scope="module")
def pipes():
    return {name: build_pipeline(name) for name in FAMILIES}


@pytest.mark.parametrize(("family", "index"), FITS, ids=[f"{f}-{i}" for f, i in FITS])
def test_a_declared_fit_reads_two_sizes_that_agree_on_the_family_pipeline(pipes, family, index):
    fit = FAMILIES[family].fits[index]
    pipe = pipes[family]
    assert isinstance(fit.left(pipe), int) and isinstance(fit.right(pipe), int)
    assert fit.mismatch(pipe) is None


def _configs(pipe, changed: str, field: str) -> SimpleNamespace:
    """The pipeline's components as plain configs, with ``changed.field`` one larger."""
    parts = {}
    for name, part in pipe.components.items():
        cfg = getattr(part, "config", None)
        if cfg is None:
            continue
        values = dict(cfg) if isinstance(cfg, dict) else cfg.to_dict()
        if name == changed:
            values[field] += 1
        parts[name] = SimpleNamespace(config=SimpleNamespace(**values))
    return SimpleNamespace(**parts)


@pytest.mark.parametrize(("family", "index"), FITS, ids=[f"{f}-{i}" for f, i in FITS])
def test_the_same_fit_fails_when_one_size_is_changed(pipes, family, index):
    fit = FAMILIES[family].fits[index]
    component, field = fit.right.__doc__.split()[:2]
    assert fit.mismatch(_configs(pipes[family], "none", field)) is None  # the plain copy still fits
    assert fit.mismatch(_configs(pipes[family], component, field)) is not None


def test_every_family_declares_what_its_denoiser_must_fit():
    assert all(fam.fits for fam in FAMILIES.values())
