"""``lora-parity doctor`` and ``lora-parity --version``, run in-process through ``parity.cli.main``:
every section printed, a family or quantizer that cannot run shown with its reason, the JSON report,
exit 0 even where a section could not be read (the doctor informs, it does not gate)."""

from __future__ import annotations

import json
import re
import shutil
from importlib import metadata
from pathlib import Path

import pytest

import parity.doctor
from parity.cli import main
from parity.zoo import registry
from tests.support.cli import assert_one_line_error

SECTIONS = ("Versions", "Device", "Families (--family)", "Quantizers (--quantization)",
            "Golden images (golden/<device class>/)")
REPO = Path(__file__).resolve().parents[1]


def doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(["doctor", "--golden-dir", str(REPO / "golden"), *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in out + err
    return out


def section(text: str, title: str) -> str:
    """The lines of one titled section (sections are separated by a blank line)."""
    return next(block for block in text.split("\n\n") if block.startswith(title + "\n"))


def test_doctor_prints_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    out = doctor(capsys)
    titles = [block.splitlines()[0] for block in out.strip().split("\n\n")]
    assert titles == list(SECTIONS)
    versions = section(out, "Versions")
    for package in ("torch", "diffusers", "peft", "transformers", "lora-parity", "python"):
        assert re.search(rf"^  {re.escape(package)} +{re.escape(parity.doctor.versions()[package])}$", versions, re.M)
    assert re.search(r"^  cpu: .+, \d+ cores .*GiB memory", section(out, "Device"), re.M)
    families = section(out, "Families (--family)")
    for name in registry.FAMILIES:
        assert re.search(rf"^  {re.escape(name)} +\S+ +yes$", families, re.M)
    quantizers = section(out, "Quantizers (--quantization)")
    assert re.search(r"^  fp8-e4m3 +layerwise +torch +yes", quantizers, re.M)  # needs nothing but torch
    # diffusers refuses bitsandbytes on a CPU: "no" on cpu, with the registry's reason
    assert re.search(r"^  bnb-nf4 +bitsandbytes +bitsandbytes +no", quantizers, re.M)
    assert "  - on cpu: bnb-nf4 needs a CUDA device" in quantizers
    golden = section(out, "Golden images (golden/<device class>/)")
    assert re.search(r"^  cpu( \(this device\))?: \d+ of \d+ cases have a baseline in ", golden, re.M)


def test_an_unavailable_family_is_shown_with_its_reason(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # worded as Family.unavailable words it under diffusers 0.35.2 (the gate's old env)
    why = "diffusers 0.35.2 has no ZImagePipeline (added in diffusers 0.36)"
    monkeypatch.setitem(registry.UNAVAILABLE, "zimage", why)
    out = doctor(capsys)
    families = section(out, "Families (--family)")
    assert re.search(r"^  zimage +ZImagePipeline +no$", families, re.M)
    assert f"  - zimage: {why}" in families.splitlines()
    assert re.search(r"^  sd15 +\S+ +yes$", families, re.M)


def test_json_report_is_valid_and_matches_the_text(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.UNAVAILABLE, "flux2", "no Flux2Pipeline here")
    out_file = tmp_path / "doctor.json"
    doctor(capsys, "--json", str(out_file))
    report = json.loads(out_file.read_text())
    assert set(report) == {"versions", "device", "families", "quantizers", "golden"}
    assert report["versions"]["lora-parity"] == metadata.version("lora-parity")
    assert {f["name"] for f in report["families"]} == {f.name for f in registry.ALL}
    flux2 = next(f for f in report["families"] if f["name"] == "flux2")
    assert flux2 == {"name": "flux2", "pipeline": "Flux2Pipeline", "available": False, "reason": "no Flux2Pipeline here"}
    nf4 = next(q for q in report["quantizers"] if q["name"] == "bnb-nf4")
    assert "needs a CUDA device" in nf4["unavailable"]["cpu"]
    cpu = next(g for g in report["golden"] if g["device_class"] == "cpu")
    assert cpu["present"] + len(cpu["missing"]) == cpu["expected"] > 0


def test_json_report_is_not_overwritten(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "doctor.json"
    out_file.write_text("keep")
    assert_one_line_error(capsys, main(["doctor", "--json", str(out_file)]), str(out_file))
    assert out_file.read_text() == "keep"
    doctor(capsys, "--json", str(out_file), "--overwrite")
    assert "versions" in json.loads(out_file.read_text())


def test_golden_counts_follow_the_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["doctor", "--golden-dir", str(tmp_path / "none")]) == 0
    assert re.search(r"^  cpu( \(this device\))?: no baselines \(.*none/cpu/ does not exist\)",
                     capsys.readouterr().out, re.M)
    # one committed baseline (its PNG and its manifest entry) copied: 1 of N, the others named missing
    (tmp_path / "g" / "cpu").mkdir(parents=True)
    shutil.copy(REPO / "golden" / "cpu" / "sd15-base.png", tmp_path / "g" / "cpu")
    manifest = json.loads((REPO / "golden" / "cpu" / "manifest.json").read_text())
    manifest["entries"] = {"sd15-base": manifest["entries"]["sd15-base"]}
    (tmp_path / "g" / "cpu" / "manifest.json").write_text(json.dumps(manifest))
    report = parity.doctor.collect(golden_dir=str(tmp_path / "g"))
    cpu = report["golden"][0]
    assert cpu["present"] == 1 and "sd15-base" not in cpu["missing"] and "sd15-lora-1.0" in cpu["missing"]
    text = parity.doctor.format_text(report)
    assert f"1 of {cpu['expected']} cases have a baseline" in text and "missing: " in text


def test_a_section_that_cannot_be_read_is_reported_and_the_rest_still_is(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> list:
        raise ImportError("cannot import name 'WanPipeline' from 'diffusers'")

    monkeypatch.setattr(parity.doctor, "families", broken)
    out = doctor(capsys)
    assert section(out, "Families (--family)").splitlines()[1] == (
        "  could not be read: ImportError: cannot import name 'WanPipeline' from 'diffusers'")
    assert "bnb-nf4" in section(out, "Quantizers (--quantization)")


def test_cuda_devices_are_described_with_their_compute_capability() -> None:
    # the GPU's lines as a CUDA machine reports them (this machine may have none)
    report = parity.doctor.collect(golden_dir=str(REPO / "golden"))
    report["device"] = {"cpu": report["device"]["cpu"], "cuda_runtime": "12.8", "why_no_cuda": None,
                        "default_device": "cuda",
                        "cuda": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
                                  "device_class": "cuda-sm90", "memory_gib": 79.2}]}
    device = section(parity.doctor.format_text(report), "Device")
    assert "  cuda:0: NVIDIA H100 80GB HBM3, compute capability 9.0 (device class cuda-sm90), 79.2 GiB" in device
    assert "  --device auto runs on: cuda" in device


def test_version_prints_the_package_and_library_versions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    v = {name: metadata.version(name) for name in ("lora-parity", "torch", "diffusers", "peft", "transformers")}
    assert re.fullmatch(r"lora-parity \S+\ntorch \S+, diffusers \S+, peft \S+, transformers \S+ \(python [\d.]+\S*\)\n",
                        out), out
    assert out.startswith(f"lora-parity {v['lora-parity']}\ntorch {v['torch']}, diffusers {v['diffusers']}, "
                          f"peft {v['peft']}, transformers {v['transformers']} (python ")


def test_version_with_a_verb_still_just_prints_the_versions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version", "doctor"]) == 0
    assert capsys.readouterr().out.startswith("lora-parity ")
