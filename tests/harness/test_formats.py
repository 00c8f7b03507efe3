"""Every layout round-trips through the neutral representation. Bad files: tests/test_bad_input.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from parity.errors import ParityInputError
from parity.lora.familyguess import describe_guess, guess_family
from parity.lora.layouts import LAYOUTS, nameable, save_lora, to_state_dict
from parity.lora.neutral import DiffModule, LoraModule
from parity.lora.reader import read_lora
from parity.lora.synth import mixed_rank, synth_lora
from parity.reference.merge import delta_from_factors
from parity.zoo import FAMILIES, build_pipeline, get_family


@pytest.fixture(scope="module")
def sd15():
    family = get_family("sd15")
    return family.components(build_pipeline(family))


@pytest.fixture(scope="module")
def lora(sd15):
    targets = {"unet": ("to_q", "to_out.0", "proj_in", "conv1"), "text_encoder": ("q_proj", "fc1")}
    return synth_lora(sd15, targets, seed=5, rank=mixed_rank(2, 6), alpha=lambda r: float(r) / 2)


@pytest.mark.parametrize("layout", [l for l in LAYOUTS if LAYOUTS[l].prefix in ("component", "kohya")
                                    and LAYOUTS[l].naming in ("diffusers", "legacy", "sgm")
                                    and l != "lora_transformer"])  # a transformer prefix: Flux's, below
def test_layout_round_trips_tensors_and_alpha_bit_exact(sd15, lora, layout, tmp_path):
    path = save_lora(lora, tmp_path / f"{layout}.safetensors", layout, sd15)

    back = read_lora(path, sd15)

    assert back.layout == layout
    assert set(back.modules) == set(lora.modules)
    for key, m in lora.modules.items():
        got = back.modules[key]
        assert torch.equal(got.down, m.down) and torch.equal(got.up, m.up)
        assert got.effective_alpha == m.effective_alpha


def _delta(m) -> torch.Tensor:
    return delta_from_factors(m) if isinstance(m, LoraModule) else m.diff.double()


# Layouts on names that fuse modules (BFL qkv, linear1) or store no alpha (α/r folded into up):
# the file's factors are not the neutral ones, but every module's ΔW is, to float32 rounding.
FUSING = [(family, layout) for family in FAMILIES for layout in LAYOUTS
          if LAYOUTS[layout].naming in ("bfl", "xlabs") and family == "flux"
          or LAYOUTS[layout].prefix in ("diffusion_model", "none") and family in ("flux", "qwenimage")
          and LAYOUTS[layout].naming == "diffusers"]


@pytest.mark.parametrize(("family", "layout"), FUSING, ids=[f"{f}-{l}" for f, l in FUSING])
def test_layout_round_trips_every_module_delta(family, layout):
    fam = get_family(family)
    components = fam.components(build_pipeline(fam))
    lora = synth_lora(components, fam.default_targets, seed=3, rank=mixed_rank(2, 4), alpha=lambda r: 1.5 * r,
                      only=nameable(layout, components))
    sd, metadata = to_state_dict(lora, layout, components)

    back = read_lora(sd, components, metadata=metadata)

    assert back.layout == layout and not back.unmatched
    assert set(back.modules) >= set(lora.modules)
    if LAYOUTS[layout].diff:  # .diff and .diff_b read as full weight and bias differences
        assert any(isinstance(m, DiffModule) and m.diff is not None and m.bias is not None
                   for m in back.modules.values())
    for key, m in back.modules.items():
        want = _delta(lora.modules[key]) if key in lora.modules else torch.zeros_like(_delta(m))
        torch.testing.assert_close(_delta(m), want, rtol=1e-6, atol=1e-7, msg=str(key))


def test_kohya_names_resolve_to_out_0_and_proj_in_against_the_module_tree(sd15, lora):
    sd, _ = to_state_dict(lora, "kohya")
    assert any("to_out_0.lora_down" in k for k in sd) and any("proj_in.lora_down" in k for k in sd)

    back = read_lora(sd, sd15)

    names = {m for _, m in back.modules}
    assert any(n.endswith("to_out.0") for n in names) and any(n.endswith("proj_in") for n in names)


def test_kohya_text_encoder_keys_carry_text_model_like_published_files(lora):
    sd, _ = to_state_dict(lora, "kohya")
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj") for k in sd)


def test_unmatched_keys_are_an_error_when_strict_and_listed_when_lenient(sd15, lora, tmp_path):
    sd, _ = to_state_dict(lora, "diffusers")
    sd["unet.down_blocks.9.attentions.0.proj_inn.lora_A.weight"] = torch.zeros(2, 16)
    sd["unet.down_blocks.9.attentions.0.proj_inn.lora_B.weight"] = torch.zeros(16, 2)
    save_file(sd, tmp_path / "extra.safetensors")

    with pytest.raises(ParityInputError) as err:
        read_lora(tmp_path / "extra.safetensors", sd15)
    assert "extra.safetensors" in str(err.value) and "proj_inn" in str(err.value)

    lenient = read_lora(tmp_path / "extra.safetensors", sd15, strict=False)
    assert lenient.unmatched == ["unet.down_blocks.9.attentions.0.proj_inn.lora_A.weight",
                                 "unet.down_blocks.9.attentions.0.proj_inn.lora_B.weight"]


def test_keys_of_another_layout_and_stray_alphas_are_listed_as_unmatched_not_dropped(sd15, lora):
    sd, _ = to_state_dict(lora, "kohya")
    stray = {"unet.down_blocks.0.resnets.0.conv1.lora_A.weight": torch.zeros(2, 8, 3, 3),  # a diffusers-layout key
             "lora_unet_nowhere.alpha": torch.tensor(1.0)}

    back = read_lora({**sd, **stray}, sd15, strict=False)

    assert sorted(back.unmatched) == sorted(stray)
    assert set(back.modules) == set(lora.modules)


@pytest.mark.parametrize(
    ("keys", "family"),
    [
        (["text_encoder_2.encoder.layers.0.self_attn.q_proj.lora_A.weight"], "sdxl"),
        (["lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"], "sdxl"),
        (["transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"], "flux"),
        (["diffusion_model.transformer_blocks.0.img_mlp.net.0.proj.lora_A.weight"], "qwenimage"),
        (["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"], None),  # sd15 or sdxl: no guess
        (["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"], None),  # flux or qwenimage
    ],
)
def test_family_guess_names_a_family_only_on_its_signature_keys(keys, family):
    guess = guess_family(keys)

    assert (guess[0] if guess else None) == family
    assert (family is None) == (describe_guess(keys) == "")


LAYOUTS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "layouts.md"  # the README links it


def layouts_missing_from(readme: str, layouts) -> list[str]:
    """Registered layouts whose name or example key the layout table (docs/layouts.md) does not show."""
    return [l.name for l in layouts if f"`{l.name}`" not in readme or f"`{l.example}`" not in readme]


def test_the_layouts_page_lists_every_registered_layout_with_its_example_key():
    readme = LAYOUTS_PAGE.read_text()
    assert layouts_missing_from(readme, LAYOUTS.values()) == []


def test_a_layout_the_layouts_page_does_not_list_is_caught():
    readme = LAYOUTS_PAGE.read_text()
    unlisted = replace(LAYOUTS["kohya"], name="kohya-unlisted", example="lora_unet_nowhere.lora_down.weight")
    assert layouts_missing_from(readme, [unlisted]) == ["kohya-unlisted"]
