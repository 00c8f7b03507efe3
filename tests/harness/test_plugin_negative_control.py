"""The ``lora_parity`` fixture users get (parity/pytest/fixture.py) must be able to fail: a fuse that drops
PEFT's alpha/rank scale (tests/support/broken_fuse.py's break, applied with monkeypatch here) fails its
check, a render of another LoRA fails its golden image, a file diffusers refuses is the CLI's FAIL line, and
bad input fails the test with one line. Each control has its untouched twin beside it, so a failure is the
break's and not the fixture's; the quantized check passes through as ``lora-parity check --quantization``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from parity.cli.check import format_check
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family
from tests.support.families import needs
from tests.support.quantizers import needs_quantizers


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("plugin-loras")
    components = get_family("sd15").components(build_pipeline("sd15"))
    # alpha 2 over rank 4: PEFT's scaling is 0.5, so a fuse without it merges twice the delta
    return {name: write_lora(components, {"unet": ("to_q", "to_v")}, str(d / f"{name}.safetensors"), seed=seed,
                             rank=4, alpha=2.0)
            for name, seed in (("a", 1), ("b", 2))}


def break_fuse(monkeypatch: pytest.MonkeyPatch) -> None:
    from peft.tuners.lora import layer

    for cls in (layer.Linear, layer.Conv2d):
        original = cls.get_delta_weight
        monkeypatch.setattr(cls, "get_delta_weight",
                            lambda self, adapter, *a, _original=original, **kw:
                            _original(self, adapter, *a, **kw) / self.scaling[adapter])


def test_the_fixture_passes_an_untouched_fuse(lora_parity, loras):
    report = lora_parity.check(family="sd15", loras=[loras["a"]], dtypes=["float32"], scale=1.0)
    assert report.ok, report.text
    assert report.text == format_check(report.report)  # what `lora-parity check` prints
    assert report.text.endswith("\nPASS")


def test_the_fixture_fails_a_fuse_that_drops_the_alpha_scale(lora_parity, loras, monkeypatch):
    break_fuse(monkeypatch)
    report = lora_parity.check(family="sd15", loras=[loras["a"]], dtypes=["float32"], scale=1.0)
    assert not report.ok
    assert "FAIL: a parity check failed" in report.text
    assert "2× the reference delta: alpha not applied?" in report.text  # the diagnosis names the break
    assert report.text == format_check(report.report)


def test_the_golden_helper_writes_a_missing_baseline_then_fails_a_render_that_moved(lora_parity, loras, tmp_path):
    helper = dataclasses.replace(lora_parity, golden_root=tmp_path / "golden", mismatch_dir=tmp_path / "mismatch")
    first = helper.golden(family="sd15", loras=loras["a"], name="style")
    assert not first.ok and "there was no baseline; one was written now" in first.text  # as pytest-regressions
    assert (tmp_path / "golden" / "cpu" / "sd15-style.png").is_file()

    moved = helper.golden(family="sd15", loras=[loras["b"]], name="style")  # another LoRA: another image
    assert not moved.ok
    assert "FAIL: the render moved beyond the golden thresholds" in moved.text
    assert moved.report.artifact and Path(moved.report.artifact).is_file()  # expected | actual | difference


@pytest.mark.slow
def test_the_golden_helper_passes_the_same_render_and_the_update_flag_rewrites(lora_parity, loras, tmp_path):
    updating = dataclasses.replace(lora_parity, golden_root=tmp_path, update_golden=True)
    written = updating.golden(family="sd15", loras=[loras["a"]], name="style")
    assert written.ok and "baseline written" in written.text, written.text
    verifying = dataclasses.replace(updating, update_golden=False)
    assert verifying.golden(family="sd15", loras=[loras["a"]], name="style").ok
    assert updating.golden(family="sd15", loras=[loras["b"]], name="style").ok  # rewritten, on purpose
    same = verifying.golden(family="sd15", loras=[loras["b"]], name="style")
    assert same.ok, same.text


def test_a_file_diffusers_refuses_is_the_clis_one_fail_line(lora_parity, tmp_path):
    components = get_family("sd15").components(build_pipeline("sd15"))
    # parses and matches, but diffusers cannot tell what it is: text-encoder-only kohya keys (tests/test_cli.py)
    refused = write_lora(components, {"text_encoder": ("q_proj",)}, str(tmp_path / "te_only.safetensors"), "kohya",
                         seed=3)
    report = lora_parity.check(family="sd15", loras=[refused])
    assert not report.ok
    assert report.text.startswith("FAIL: ") and "diffusers refused" in report.text and "\n" not in report.text


@pytest.mark.slow  # 15 s; the quantized check's own controls: tests/harness/test_quantized_controls.py
@needs("zimage")
@needs_quantizers()
def test_quantization_runs_the_quantized_check_and_prints_it_as_the_cli(lora_parity, tmp_path):
    from parity.checks.cases import targets_for
    from parity.cli.quantized import format_quant

    family = get_family("zimage")
    transformer = family.components(build_pipeline(family))["transformer"]
    path = write_lora({"transformer": transformer}, {"transformer": targets_for(family, "default")["transformer"]},
                      str(tmp_path / "lora.safetensors"), "diffusers", seed=1, rank=4)
    report = lora_parity.check(family="zimage", loras=[path], quantization="torchao-int8wo")
    assert report.ok, report.text
    assert report.text == format_quant(report.report)
    assert "quantization torchao-int8wo" in report.text.splitlines()[0]


def test_bad_input_fails_the_test_with_one_line(lora_parity, tmp_path):
    with pytest.raises(pytest.fail.Exception) as failed:
        lora_parity.check(family="sd15", loras=[tmp_path / "missing.safetensors"])
    assert str(failed.value).startswith("lora_parity: bad input: ") and "\n" not in str(failed.value)
    assert "missing.safetensors" in str(failed.value)
