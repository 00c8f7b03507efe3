"""`lora-parity check` on LoRA files written the way public trainers write them (issue 13).

The files come from tests/support/trainer_files.py, which derives every key from the tiny models'
module trees the way each trainer's naming code does, independently of parity.lora (the code under
test). Each case pins the verdict: a clean pass (exit 0, every module of the file matched, no key
left over), or the failure real diffusers 0.42.1 behaviour causes. The negative controls at the end
write the kohya SDXL file with its SGM block numbering off by one and show it does not pass cleanly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from parity.cli import main
from parity.zoo import UNAVAILABLE
from tests.support.cli import assert_one_line_error
from tests.support.trainer_files import (
    TRAINER_FILES,
    TrainerFile,
    by_id,
    keys_of,
    kohya_sdxl,
)


@dataclass(frozen=True)
class Verdict:
    code: int
    out: str
    err: str
    report: dict | None  # the --json report, when the run wrote one

    @property
    def text(self) -> str:
        return self.out + self.err

    @property
    def first_line(self) -> str:
        """The verdict line: the refusal on stderr, else the report's closing PASS/FAIL line."""
        for line in self.err.splitlines():
            if line.startswith("lora-parity: error: "):
                return line
        return next((line for line in reversed(self.out.splitlines()) if line.startswith(("PASS", "FAIL"))), "")


def run_check(family: str, lora: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Verdict:
    report = tmp_path / f"{lora.stem}.json"
    code = main(["check", "--family", family, "--dtype", "float32", "--lora", str(lora), "--json", str(report)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return Verdict(code, out, err, json.loads(report.read_text()) if report.exists() else None)


def modules_in(trainer: TrainerFile, path: Path) -> int:
    """How many model modules the file's LoRA pairs (and LoKr factors) reach: one per down/A factor (LoKr's w1),
    except XLabs' fused qkv pairs, which reach three (to_q/to_k/to_v or their add_ twins)."""
    downs = [k for k in keys_of(path) if k.endswith(("lora_down.weight", ".down.weight", "lora_A.weight",
                                                      "lora_A.default.weight", ".lokr_w1", ".lokr_w1_a"))]
    # fused q|k|v: XLabs' processor.qkv_lora, Z-Image's attention.qkv (ComfyUI's names), BFL's img/txt_attn.qkv
    return len(downs) + 2 * sum(".processor.qkv_lora" in k or re.search(r"(attention|_attn)[._]qkv\.", k) is not None
                                for k in downs)


def clean_pass(v: Verdict, modules: int) -> bool:
    """Exit 0, PASS, and every module of the file matched with no key left over."""
    if v.code != 0 or v.first_line != "PASS" or v.report is None or not v.report["ok"]:
        return False
    [f] = v.report["files"]
    return f["unmatched"] == [] and sum(f["matched"].values()) == modules


# trainer id -> (exit code, text in the verdict line). Measured on diffusers 0.42.1, peft 0.21.2.
EXPECTED = {
    "sd15-kohya": (0, "PASS"),
    # A per-module alpha is lost on every attention projection and text-encoder module (see below).
    "sd15-kohya-dynamic-locon": (1, "FAIL: a parity check failed"),
    # SD 2.x through the same converter: the same verdicts as SD 1.x
    "sd2-kohya-v2": (0, "PASS"),
    "sd2-kohya-v2-dynamic-locon": (1, "FAIL: a parity check failed"),
    "sdxl-kohya-sgm": (0, "PASS"),
    # BFL_WIDTHS: diffusers splits linear1 at FLUX.1-dev's widths (3072/12288), not the tiny model's.
    "flux-kohya-bfl": (1, "diffusers refused a valid"),
    "flux-comfyui": (1, "diffusers refused a valid"),
    "flux-xlabs": (0, "PASS"),
    # LORA_TRANSFORMER: _convert_mixture_state_dict_to_diffusers raises KeyError on these keys.
    "flux-lora-transformer": (1, "diffusers refused a valid"),
    # BFL_WIDTHS again: the pairs beside the .diff keys reach the hard-coded linear1 split first.
    "flux-kohya-diff": (1, "diffusers refused a valid"),
    "qwenimage-musubi-bf16": (0, "PASS"),
    "qwenimage-lightning": (0, "PASS"),
    "qwenimage-diffsynth": (0, "PASS"),
    "qwenimage-comfy": (0, "PASS"),
    # QWEN_ALPHA_KEYS: the .alpha keys route it through the Qwen converter, which keeps transformer.
    "qwenimage-transformer-alpha": (1, "diffusers refused a valid"),
    # The legacy training scripts stored no alpha (alpha = r, scale 1), so diffusers dropping alphas
    # (LEGACY_ALPHA, which the synthesizer's alpha-carrying legacy files hit) does not apply.
    "sd15-diffusers-legacy": (0, "PASS"),
    "sd2-diffusers-legacy": (0, "PASS"),
    # The same files against the whole edit pipeline: the same verdicts (one converter serves both).
    "qwenimage-edit-musubi": (0, "PASS"),
    "qwenimage-edit-lightning": (0, "PASS"),
    "qwenimage-edit-diffsynth": (0, "PASS"),
    "qwenimage-edit-comfy": (0, "PASS"),
    "qwenimage-edit-alpha": (1, "diffusers refused a valid"),
    # Wan 2.1 / 2.2 (tests/support/trainer_wan.py); the tiny pipeline has both Wan 2.2 experts.
    "wan-musubi": (0, "PASS"),
    # MUSUBI_EXCLUDED: _convert_musubi_wan_lora_to_diffusers pops every block's q/k/v/o/ffn.0/ffn.2 pair
    # unconditionally (and counts blocks by distinct indices), so a file trained with exclude_patterns
    # raises KeyError: 'blocks_1_ffn_0.lora_down.weight'.
    "wan-musubi-excluded": (1, "diffusers refused a valid"),
    "wan-aitoolkit-high": (0, "PASS"),
    # placed in transformer_2 by its _low_noise name (parity/lora/expertguess.py), loaded there with
    # load_into_transformer_2=True
    "wan-aitoolkit-low": (0, "PASS"),
    # NORM_DIFF: _convert_non_diffusers_wan_lora_to_diffusers drops every .diff/.diff_b whose key contains
    # "norm" ("norm layer diff keys are just zeroed values") and logs, at info level only, that the
    # remaining .diff keys (patch_embedding.diff_b) are not handled: norm3 (diffusers norm2), the q/k
    # RMSNorms and the patch embedding's bias keep their base values.
    "wan-comfy-loraextract": (1, "FAIL: a parity check failed"),
    # NORM_DIFF as above, and .diff_m (blocks.N.diff_m, head.diff_m: the modulations, diffusers'
    # scale_shift_table) and patch_embedding.diff are dropped the same silent way; head.head.diff does
    # load (as proj_out lora_A with an identity lora_B and head.head.diff_b as its bias).
    "wan-lightx2v": (1, "FAIL: a parity check failed"),
    "wan-lightning": (0, "PASS"),
    # DIFFSYNTH_NO_PREFIX: no diffusion_model. / lora_unet_ prefix, so WanLoraLoaderMixin converts nothing
    # and load_lora_weights keeps only transformer.-prefixed keys: nothing loads, a warning is logged.
    "wan-diffsynth": (1, "diffusers refused a valid"),
    "wan-diffusers": (0, "PASS"),
    # Z-Image (tests/support/trainer_zimage.py)
    "zimage-musubi": (0, "PASS"),
    "zimage-musubi-comfy": (0, "PASS"),
    "zimage-aitoolkit": (0, "PASS"),
    # ZIMAGE_DIFFS_REFUSED: the Z-Image converter raises ValueError on the .diff/.diff_b keys it leaves
    "zimage-comfy-loraextract": (1, "diffusers refused a valid"),
    # ZIMAGE_FUSED_QKV_DROPPED: attention.qkv, x_embedder and final_layer.* pairs dropped (ComfyUI's names)
    "zimage-comfy-loraextract-pairs": (1, "FAIL: a parity check failed"),
    "zimage-diffsynth": (0, "PASS"),
    "zimage-diffusers": (0, "PASS"),
    # FLUX.2 (tests/support/trainer_flux2.py)
    "flux2-musubi": (0, "PASS"),
    "flux2-aitoolkit": (0, "PASS"),
    # FLUX2_FINAL_MODULATION_NOT_SWAPPED: norm_out.linear gets BFL's shift|scale as scale|shift
    "flux2-aitoolkit-all": (1, "FAIL: a parity check failed"),
    # FLUX2_KOHYA_PAIRS_UNDER_DIFFUSION_MODEL: lora_down under diffusion_model. goes to the lora_unet_-only
    # kohya converter and loads nothing
    "flux2-comfy-loraextract": (1, "diffusers refused a valid"),
    "flux2-diffusers": (0, "PASS"),
    "flux2-dev-musubi": (0, "PASS"),
    # base_model.model. renamed to diffusion_model. (diffusers #13169), then ai-toolkit's converter: alpha = r
    "flux2-fal": (0, "PASS"),
    # FLUX2_NO_PREFIX: no prefix the FLUX.2 loader converts, so nothing under transformer.: nothing loads
    "flux2-diffsynth": (1, "diffusers refused a valid"),
    # FLUX2_LOKR_QKV_FUSED: the merge goes into to_qkv / to_added_qkv; the 12 q/k/v projections stay at base
    "flux2-aitoolkit-lokr": (1, "FAIL: a parity check failed"),
    # FLUX2_LYCORIS_BFL_NAMES_REFUSED: 'These keys are not LyCORIS Flux2 LoKr keys'
    "flux2-aitoolkit-lokr-old": (1, "diffusers refused a valid"),
    "flux2-lycoris-lokr": (0, "PASS"),
}
# the layout the reader names for files no other layout spells alike
READ_AS = {"flux2-fal": "fal-flux2", "flux2-lycoris-lokr": "lycoris"}
# the modules diffusers leaves at their base values in those files (diffusers names)
DROPPED_DIFFS = {
    "wan-comfy-loraextract": ("blocks.0.norm2", "blocks.0.attn1.norm_q", "patch_embedding"),
    "wan-lightx2v": ("blocks.0.norm2", "blocks.0.attn1.norm_q", "patch_embedding", "scale_shift_table"),
}
# ~15 s on 2 CPU cores: the tiny SDXL pipeline is the costliest to check; and the edit family's files
# whose Qwen-Image twins run by default (musubi and comfy stay in the default run); sd2's dynamic LoCon
# and legacy file, the same converter paths as sd15's (its plain --v2 file stays in the default run)
SLOW = {"sdxl-kohya-sgm", "qwenimage-edit-lightning", "qwenimage-edit-diffsynth", "qwenimage-edit-alpha",
        "sd2-kohya-v2-dynamic-locon", "sd2-diffusers-legacy",
        # Wan: a few seconds each on 2 cores; the default run keeps musubi (lora_unet_ + original names),
        # the low-noise ai-toolkit file (expert placement) and the excluded musubi file (a refusal, cheap).
        # aitoolkit-high is aitoolkit-low in the other expert, lightning the same converter path as
        # aitoolkit with alpha; of the full-difference files the LightX2V one (.diff_m too) runs by default.
        "wan-aitoolkit-high", "wan-lightning", "wan-diffsynth", "wan-diffusers", "wan-comfy-loraextract",
        # Z-Image: the default run keeps the fused-qkv conversion (its own names and split) and the two ComfyUI
        # LoraSave files (a refusal and the dropped names); musubi, ai-toolkit, DiffSynth and diffusers files
        # are the kohya, diffusion_model, diffsynth and diffusers layouts the merge cases run by default.
        "zimage-musubi", "zimage-aitoolkit", "zimage-diffsynth", "zimage-diffusers",
        # FLUX.2: by default the musubi file (lora_unet_ + fused qkv through the kohya converter), the
        # all-Linear ai-toolkit file (the final modulation finding) and the LoraSave refusal (cheap); the
        # blocks-only ai-toolkit and diffusers files are the merge cases' layouts, dev's the same transformer.
        "flux2-aitoolkit", "flux2-diffusers", "flux2-dev-musubi",
        # fal's file is the fal-flux2 layout, whose klein merge and unfuse cases run by default
        "flux2-fal",
        # the LoKr files' verdicts run by default in tests/test_flux2_lokr.py (its LyCORIS pass is slow there too)
        "flux2-aitoolkit-lokr", "flux2-aitoolkit-lokr-old", "flux2-lycoris-lokr"}


def test_every_trainer_file_has_an_expected_verdict():
    assert {t.id for t in TRAINER_FILES} == set(EXPECTED)


@pytest.mark.parametrize(
    "trainer",
    [pytest.param(t, id=t.id, marks=[pytest.mark.slow] if t.id in SLOW else []) for t in TRAINER_FILES],
)
def test_check_gives_the_right_verdict_on_a_trainer_file(trainer, tmp_path, capsys):
    if trainer.family in UNAVAILABLE:  # the gate's old env: diffusers without the family's pipeline
        pytest.skip(UNAVAILABLE[trainer.family])
    path = trainer.write(tmp_path)
    v = run_check(trainer.family, path, tmp_path, capsys)
    code, needle = EXPECTED[trainer.id]
    assert v.code == code, v.text
    assert needle in v.first_line, v.text
    if code == 0:
        assert clean_pass(v, modules_in(trainer, path)), v.text
    elif needle == "diffusers refused a valid":
        assert path.name in v.first_line
        assert "known diffusers behaviour: " in v.first_line, v.text  # the pinned refusal, named
    if trainer.id in DROPPED_DIFFS:
        assert_dropped_diffs_named(v, DROPPED_DIFFS[trainer.id])
        assert "known diffusers behaviour: diffusers' _convert_non_diffusers_wan_lora_to_diffusers drops" in v.out, \
            v.text
    if trainer.id == "zimage-comfy-loraextract-pairs":
        assert "known diffusers behaviour: in a Z-Image file on ComfyUI's names" in v.out, v.text
        failing = " ".join(v.report["results"][0]["failing"])
        for module in ("layers.0.attention.to_q", "all_x_embedder.2-1", "all_final_layer.2-1.linear"):
            assert f"transformer.{module}.weight" in failing, (module, v.text)
    if trainer.id == "flux2-aitoolkit-all":
        assert "known diffusers behaviour: diffusers' _convert_non_diffusers_flux2_lora_to_diffusers maps" in v.out, \
            v.text
        assert v.report["results"][0]["failing"] == ["transformer.norm_out.linear.weight"], v.text
    if trainer.id == "flux2-aitoolkit-lokr":
        assert "known diffusers behaviour: a FLUX.2 LoKr file on BFL's fused img_attn.qkv" in v.out, v.text
        failing = v.report["results"][0]["failing"]
        assert failing and all(re.search(r"\.attn\.(to_[qkv]|add_[qkv]_proj)\.weight$", f) for f in failing), v.text
    if trainer.id in READ_AS:
        assert v.report["files"][0]["layout"] == READ_AS[trainer.id], v.text
    if trainer.id == "wan-aitoolkit-low":
        [f] = v.report["files"]
        assert set(f["matched"]) == {"transformer_2"}, v.text
    if trainer.id in ("sd15-kohya-dynamic-locon", "sd2-kohya-v2-dynamic-locon"):
        assert_alpha_lost_on_attention_and_text_encoder(v)
        assert "known diffusers behaviour: in a kohya SD/SDXL file with per-module alpha" in v.out, v.text


def assert_alpha_lost_on_attention_and_text_encoder(v: Verdict) -> None:
    """Real diffusers 0.42.1 behaviour, not a writer bug: _convert_non_diffusers_lora_to_diffusers
    names each alpha ``diffusers_name.split(".lora.")[0] + ".alpha"``, but the attention keys it makes
    are ``attn1.processor.to_q_lora.down.weight`` and the text-encoder ones ``to_q_lora`` /
    ``.lora_linear_layer.``, none containing ``.lora.``: their alpha_pattern entries match no module and
    they load with the file's most common alpha. With alpha/r = 0.5 everywhere, a rank-1 to_q fuses
    4x its delta. proj_in/proj_out/ff/conv keys do contain ``.lora.`` and keep their alpha."""
    assert v.report is not None and v.report["files"][0]["unmatched"] == [], v.text
    [result] = v.report["results"]
    merge = [f for f in result["failures"] if not f.startswith("unfuse")]
    assert merge, v.text
    for failure in merge:
        module = failure.split(":")[0]
        attention = ".attn1.to_" in module or ".attn2.to_" in module
        assert attention or module.startswith("text_encoder."), failure
        assert "the reference delta" in failure


def assert_dropped_diffs_named(v: Verdict, modules: tuple[str, ...]) -> None:
    """NORM_DIFF: every full difference diffusers drops fails the merge check naming its module."""
    assert v.report is not None, v.text
    [result] = v.report["results"]
    failing = " ".join(result["failing"])  # every weight over its bound; "failures" words the worst five
    for module in modules:
        assert f"transformer.{module}" in failing, (module, v.text)


# ---------------------------------------------------------------- negative controls: a wrong SGM index


@pytest.mark.slow
def test_control_sgm_input_blocks_off_by_one_is_refused_naming_a_key(tmp_path, capsys):
    """Every input block after conv_in numbered one too high: the level-0 resnet lands on
    input_blocks.2 and the cross-attention level on input_blocks.4, names the tiny UNet does not have
    in those places. Their keys match no module, so the check refuses the file (exit 2) naming one."""
    path = kohya_sdxl(tmp_path / "kohya_sdxl_input_off_by_one.safetensors", input_shift=1)
    code = main(["check", "--family", "sdxl", "--dtype", "float32", "--lora", str(path)])
    assert_one_line_error(capsys, code, path.name, "lora_unet_input_blocks_")


def test_control_sgm_output_blocks_off_by_one_exits_nonzero(tmp_path, capsys):
    """Every output block numbered one too high: output_blocks.1.0 now holds the 32-channel resnet's
    factors where the tiny UNet's up_blocks.0.resnets.1 takes 24 channels, so the check refuses it."""
    path = kohya_sdxl(tmp_path / "kohya_sdxl_output_off_by_one.safetensors", output_shift=1)
    code = main(["check", "--family", "sdxl", "--dtype", "float32", "--lora", str(path)])
    assert code != 0
    if code == 2:
        assert_one_line_error(capsys, code, path.name, "shape mismatch")
