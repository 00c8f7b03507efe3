"""The ``lora-parity`` command line, run in-process through ``parity.cli.main``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from parity.cli import main
from parity.lora.synth import write_lora
from parity.lora.tensors import load_tensors
from parity.zoo import build_pipeline, get_family
from tests.support.cli import assert_one_line_error

UNMATCHED_KEY = "unet.down_blocks.9.nowhere.to_q.lora_A.weight"


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """LoRA files for the tiny sd15 pipeline: good ones in both layouts, and ones diffusers refuses.
    Malformed files live in tests/test_bad_input.py's matrix."""
    d = tmp_path_factory.mktemp("loras")
    family = get_family("sd15")
    components = family.components(build_pipeline("sd15"))
    files = {
        "diffusers": Path(write_lora(components, {"unet": ("to_q", "to_v"), "text_encoder": ("q_proj",)},
                                     d / "style.safetensors", seed=1, rank=4, alpha=2.0)),
        "kohya": Path(write_lora(components, {"unet": ("to_k",)}, d / "kohya.safetensors", "kohya", seed=2)),
    }

    sd, metadata = load_tensors(files["diffusers"])  # the same file with two keys for no module added
    sd[UNMATCHED_KEY] = torch.zeros(4, 16)
    sd[UNMATCHED_KEY.replace("lora_A", "lora_B")] = torch.zeros(16, 4)
    files["unmatched"] = d / "extra_keys.safetensors"
    save_file(sd, str(files["unmatched"]), metadata=metadata)

    # Parses and matches, but diffusers cannot tell what it is: text-encoder-only kohya keys.
    files["diffusers_refuses"] = Path(write_lora(components, {"text_encoder": ("q_proj",)}, d / "te_only.safetensors",
                                                 "kohya", seed=3))
    return files


def check(*args: str | Path, dtype: str = "float32") -> int:
    return main(["check", "--family", "sd15", "--dtype", dtype, *map(str, args)])


# ---------------------------------------------------------------- passing runs


def test_check_passes_on_a_synthesised_lora(loras, capsys):
    code = check("--lora", loras["diffusers"], "--cycles", "2")
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "diffusers" in out and "ULP" in out and "PASS" in out
    assert "style.safetensors" in out
    assert "family sd15" in out and f"torch {torch.__version__}" in out
    # progress on stderr, report on stdout
    assert "[1/2] float32: fuse" in err and "[2/2] float32: 2 fuse/unfuse" in err
    assert "ok" in err and "PASS" not in err


def test_check_json_has_results_per_dtype(loras, tmp_path, capsys):
    out_json = tmp_path / "report.json"
    code = check("--lora", loras["diffusers"], "--lora", loras["kohya"], "--weights", "0.7,0.8",
                 "--scale", "1", "--cycles", "2", "--json", out_json, dtype="float32,bfloat16")
    assert code == 0, capsys.readouterr()
    data = json.loads(out_json.read_text())
    assert data["family"] == "sd15" and data["model_path"] is None and data["ok"] is True
    assert {"torch", "diffusers", "peft"} <= set(data["versions"])
    assert [f["layout"] for f in data["files"]] == ["diffusers", "kohya"]
    assert data["files"][0]["matched"] == {"unet": 16, "text_encoder": 2}
    assert data["files"][1]["unmatched"] == []
    assert [r["dtype"] for r in data["results"]] == ["float32", "bfloat16"]
    assert data["known"] == []
    for r in data["results"]:
        assert r["scale"] == 1.0 and r["ok"] and r["failures"] == [] and r["known"] == []
        assert 0 <= r["max_bound_ratio"] <= 1 and r["max_ulps"] > 0
        assert r["unfuse"]["cycles"] == 2 and r["unfuse"]["lora_scale"] == 1.0
        assert len(r["unfuse"]["max_ulps"]) == len(r["unfuse"]["frac_changed"]) == 2
        assert r["unfuse"]["ok"]
        state = r["unfuse"]["state"]
        assert state["ok"] and state["scaling_changed"] == [] and state["active_changed"] == []
        assert 0 < state["vs_loaded"] <= state["budget"] and state["tolerance"] == "unfused"


def test_check_at_scale_0_5_fails_naming_the_scaling_fuse_lora_left_behind(loras, tmp_path, capsys):
    """Real diffusers 0.42.1 behaviour (SECOND_FUSE in parity/checks/cases.py), shown as the failing
    verdict it is: fuse_lora(lora_scale=0.5) halves every PEFT scaling and unfuse_lora leaves it halved.
    Should an upgrade fix it, this test fails: the finding is gone, update it and docs/findings.md."""
    from parity.checks.findings import SECOND_FUSE

    out_json = tmp_path / "report.json"
    code = check("--lora", loras["diffusers"], "--scale", "0.5", "--json", out_json)
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "Traceback" not in out + err
    [line] = [line for line in out.splitlines() if "PEFT scaling of" in line]
    # rank 4, alpha 2: PEFT's scaling is 0.5 after loading, 0.25 after fuse(0.5) + unfuse
    assert "is 0.25, was 0.5 after loading (scale left behind by fuse_lora(lora_scale=0.5))" in line
    assert line.split("PEFT scaling of ")[1].startswith(("unet.", "text_encoder."))
    assert "the denoiser output differs from the loaded, never fused pipeline" in out
    known = "known diffusers behaviour: " + SECOND_FUSE.reason.removeprefix("finding: ")
    assert out.rstrip().endswith(f"FAIL: a parity check failed\n  {known}")
    data = json.loads(out_json.read_text())
    assert data["ok"] is False and data["known"] == [known]
    [r] = data["results"]
    assert r["unfuse"]["lora_scale"] == 0.5 and not r["unfuse"]["state"]["ok"]
    assert {(c["now"], c["loaded"]) for c in r["unfuse"]["state"]["scaling_changed"]} == {(0.25, 0.5)}


def test_check_refuses_a_key_that_matches_no_module_naming_it(loras, capsys):
    # Its contribution could be in no fused weight: the file does not fit the model (bad input).
    code = check("--lora", loras["unmatched"], "--quiet")
    assert_one_line_error(capsys, code, "extra_keys.safetensors", UNMATCHED_KEY)


def test_families_lists_every_zoo_family_with_components_and_layouts(capsys):
    from parity.zoo import FAMILIES

    assert main(["families"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for family in FAMILIES.values():
        [line] = [line for line in lines if line.split()[0] == family.name]
        assert ",".join(family.lora_components) in line and ",".join(family.layouts) in line


def test_check_help_explains_the_unfuse_scale_and_exits_0(capsys):
    assert main(["check", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Both run at --scale" in out and "one pipeline per dtype" in out and "scale_layer" in out
    assert "known diffusers behaviour" in out


# ---------------------------------------------------------------- parity failures: exit 1


def test_check_exits_1_when_the_fuse_doubles_the_delta(loras, monkeypatch, capsys):
    from peft.tuners.lora.layer import Linear

    original = Linear.get_delta_weight
    monkeypatch.setattr(Linear, "get_delta_weight", lambda self, adapter: 2 * original(self, adapter))
    code = check("--lora", loras["diffusers"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "FAIL" in out and "over bound" in out
    assert "Traceback" not in err


def test_check_exits_1_when_unfuse_leaves_the_delta_in(loras, monkeypatch, capsys):
    from peft.tuners.lora.layer import Linear

    monkeypatch.setattr(Linear, "unmerge", lambda self: None)
    code = check("--lora", loras["diffusers"])
    out, _ = capsys.readouterr()
    assert code == 1
    assert "unfuse: drift" in out and "FAIL" in out


# ---------------------------------------------------------------- bad input: exit 2, one line
# Malformed files, unknown family/dtype and model paths: the matrix in tests/test_bad_input.py.


def test_check_fails_naming_the_valid_file_diffusers_refuses(loras, capsys):
    code = check("--lora", loras["diffusers"], "--lora", loras["diffusers_refuses"])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    [line] = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert "te_only.safetensors" in line and "diffusers refused a valid kohya file" in line
    assert "style.safetensors" not in line and "Traceback" not in out + err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--weights", "0.5,0.5"], "--weights"),
        (["--weights", "half"], "--weights"),
        (["--cycles", "0"], "--cycles"),
        (["--device", "tpu"], "tpu"),
        (["--json", "/no/such/dir/report.json"], "report.json"),
    ],
)
def test_check_exits_2_on_bad_options(loras, capsys, extra, needle):
    code = main(["check", "--family", "sd15", "--lora", str(loras["diffusers"]), *extra])
    assert_one_line_error(capsys, code, needle)


def test_missing_subcommand_exits_2_with_one_line(capsys):
    assert_one_line_error(capsys, main([]), "COMMAND")


def test_module_entry_point_runs_families():
    result = subprocess.run(
        [sys.executable, "-m", "parity.cli", "families"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert any(line.split()[0] == "sd15" for line in result.stdout.splitlines())
