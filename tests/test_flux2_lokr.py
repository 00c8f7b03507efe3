"""FLUX.2 LoKr files (issue 32 item 2), written as their trainers write them (tests/support/trainer_flux2.py):
LyCORIS's wrapper on diffusers' names (SimpleTuner), ai-toolkit's LoKr on BFL's names (``diffusion_model.``, both
factors full, the keys of diffusers issues #13137 / #13261) and its ``old_lokr_format`` (``lycoris_`` + BFL names).
diffusers 0.42.1 routes lokr_ keys to PEFT's LoKr (Flux2LoraLoaderMixin.lora_state_dict); the reference computes
kron(w1, w2)·α/r by LyCORIS's rules (parity/reference/variants.py), a fused qkv's ΔW split at the model's widths.
The check finds diffusers' LoKr layers by their lokr_w1 / lokr_w1_a dicts (parity.modules.held_adapters)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parity.cli import main
from tests.support import trainer_flux2
from tests.support.trainer_files import keys_of
from tests.support.families import needs

pytestmark = needs("flux2-klein")

FAMILY = "flux2-klein"
QKV = ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")


def _check(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, dict | None]:
    report = tmp_path / "report.json"
    code = main(["check", "--family", FAMILY, "--dtype", "float32", "--lora", str(path), "--json", str(report)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err, json.loads(report.read_text()) if report.exists() else None


# ~5 s on 2 cores: the lycoris layout's clean pass; the default run keeps the finding and the refusal
@pytest.mark.slow
def test_a_lycoris_lokr_file_on_diffusers_names_passes(tmp_path, capsys):
    """LyCORIS's wrapper names, w1 full, w2 = w2_a @ w2_b, α/r = 0.5, bf16: every module within its bound."""
    path = trainer_flux2.lycoris_flux2_lokr(tmp_path / "lycoris_flux2_lokr.safetensors")
    code, text, report = _check(path, tmp_path, capsys)
    assert code == 0 and report["ok"] and "\nPASS\n" in text, text
    [f] = report["files"]
    modules = len({k.rsplit(".", 1)[0] for k in keys_of(path)})
    assert f["layout"] == "lycoris" and f["unmatched"] == [] and sum(f["matched"].values()) == modules, f


def test_an_aitoolkit_lokr_on_fused_qkv_leaves_the_split_projections_at_their_base(tmp_path, capsys):
    """FLUX2_LOKR_QKV_FUSED: exactly the q/k/v projections of both double blocks fail, the finding named."""
    path = trainer_flux2.aitoolkit_flux2_lokr(tmp_path / "aitoolkit_flux2_lokr.safetensors")
    code, text, report = _check(path, tmp_path, capsys)
    assert code == 1 and "FAIL: a parity check failed" in text, text
    failing = set(report["results"][0]["failing"])
    assert failing == {f"transformer.transformer_blocks.{b}.attn.{p}.weight" for b in (0, 1) for p in QKV}, failing
    assert "known diffusers behaviour: a FLUX.2 LoKr file on BFL's fused img_attn.qkv" in text, text


def test_ai_toolkits_old_lokr_format_is_refused_naming_the_file(tmp_path, capsys):
    """FLUX2_LYCORIS_BFL_NAMES_REFUSED: lycoris_ + BFL names reach the converter that takes diffusers' names."""
    path = trainer_flux2.aitoolkit_flux2_lokr(tmp_path / "aitoolkit_flux2_lokr_old.safetensors", old_format=True)
    code, text, _ = _check(path, tmp_path, capsys)
    assert code == 1 and f"{path}: diffusers refused a valid lycoris-flux2 file" in text, text
    assert "These keys are not LyCORIS Flux2 LoKr keys" in text, text
    assert "known diffusers behaviour: Flux2LoraLoaderMixin sends every LoKr file with a lycoris_ key" in text, text
