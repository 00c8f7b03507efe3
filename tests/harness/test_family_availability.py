"""A family whose pipeline the installed diffusers lacks is left out with its reason (the gate's old env
runs diffusers 0.35, which has no QwenImageEditPlusPipeline), read from the installed version without
importing diffusers."""

from __future__ import annotations

from importlib import metadata

import pytest

import parity.zoo.qwenimage_edit as edit
from parity import versions
from parity.versions import version_at_least


@pytest.mark.parametrize(("release", "minimum", "expected"), [
    ("0.36.0", (0, 36), True), ("0.42.1", (0, 36), True), ("0.35.2", (0, 36), False),
    ("0.36.0rc1", (0, 36), True), ("1.0.0.dev0", (0, 36), True), ("0.3", (0, 36), False),
])
def test_version_at_least_reads_the_leading_numbers(monkeypatch, release, minimum, expected):
    monkeypatch.setattr(versions.metadata, "version", lambda package: release)
    assert version_at_least("diffusers", minimum) is expected


def test_a_missing_package_is_never_new_enough(monkeypatch):
    def missing(package):
        raise metadata.PackageNotFoundError(package)

    monkeypatch.setattr(versions.metadata, "version", missing)
    assert not version_at_least("diffusers", (0, 1))


def test_the_edit_family_is_absent_with_its_reason_under_diffusers_0_35(monkeypatch):
    monkeypatch.setattr(versions.metadata, "version", lambda package: "0.35.2")
    why = edit.FAMILY.unavailable()
    assert why is not None and "0.35.2" in why and "QwenImageEditPlusPipeline" in why


def test_the_edit_family_is_present_under_this_diffusers():
    assert edit.FAMILY.unavailable() is None


@pytest.mark.parametrize(("family", "release", "absent"), [
    ("zimage", "0.35.2", True), ("zimage", "0.36.0", False), ("flux2", "0.35.2", True), ("flux2", "0.36.0", False),
    ("flux2-klein", "0.36.0", True), ("flux2-klein", "0.37.0", False), ("sd15", "0.20.0", False),
])
def test_each_family_is_absent_before_the_release_that_brought_its_pipeline(monkeypatch, family, release, absent):
    from parity.zoo.registry import ALL

    fam = next(f for f in ALL if f.name == family)
    monkeypatch.setattr(versions.metadata, "version", lambda package: release)
    why = fam.unavailable()
    assert (why is not None) is absent
    if absent:
        assert release in why and fam.pipeline_class in why


def test_a_test_of_an_absent_family_is_skipped_with_the_registrys_reason(monkeypatch):
    # tests.support.families.needs: what the gate's old env (diffusers 0.35) does with the Z-Image and FLUX.2
    # tests; control: a present family's test runs
    from tests.support import families

    monkeypatch.setattr(families, "FAMILIES", {})
    monkeypatch.setattr(families, "UNAVAILABLE", {"zimage": "diffusers 0.35.2 has no ZImagePipeline"})
    skip = families.needs("zimage")
    assert skip.args == (True,) and "diffusers 0.35.2 has no ZImagePipeline" in skip.kwargs["reason"]
    monkeypatch.setattr(families, "FAMILIES", {"zimage": object()})
    assert families.needs("zimage").args == (False,)
