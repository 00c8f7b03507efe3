"""Every layout round-trips through the neutral representation; bad files name the file and key."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from parity.errors import ParityInputError
from parity.formats import LAYOUTS, read_lora, save_lora, to_state_dict
from parity.synth import mixed_rank, synth_lora
from parity.zoo import build_pipeline, get_family


@pytest.fixture(scope="module")
def sd15():
    family = get_family("sd15")
    return family.components(build_pipeline(family))


@pytest.fixture(scope="module")
def lora(sd15):
    targets = {"unet": ("to_q", "to_out.0", "proj_in", "conv1"), "text_encoder": ("q_proj", "fc1")}
    return synth_lora(sd15, targets, seed=5, rank=mixed_rank(2, 6), alpha=lambda r: float(r) / 2)


@pytest.mark.parametrize("layout", [l for l in LAYOUTS if l != "diffusion_model"])
def test_layout_round_trips_tensors_and_alpha_bit_exact(sd15, lora, layout, tmp_path):
    path = save_lora(lora, tmp_path / f"{layout}.safetensors", layout)

    back = read_lora(path, sd15)

    assert back.layout == layout
    assert set(back.modules) == set(lora.modules)
    for key, m in lora.modules.items():
        got = back.modules[key]
        assert torch.equal(got.down, m.down) and torch.equal(got.up, m.up)
        assert got.effective_alpha == m.effective_alpha


def test_kohya_names_resolve_to_out_0_and_proj_in_against_the_module_tree(sd15, lora):
    sd, _ = to_state_dict(lora, "kohya")
    assert any("to_out_0.lora_down" in k for k in sd) and any("proj_in.lora_down" in k for k in sd)

    back = read_lora(sd, sd15)

    names = {m for _, m in back.modules}
    assert any(n.endswith("to_out.0") for n in names) and any(n.endswith("proj_in") for n in names)


def test_kohya_text_encoder_keys_carry_text_model_like_published_files(lora):
    sd, _ = to_state_dict(lora, "kohya")
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj") for k in sd)


def test_keys_matching_no_module_are_named_with_the_closest_modules(sd15, lora, tmp_path):
    sd, _ = to_state_dict(lora, "diffusers")
    sd["unet.down_blocks.9.attentions.0.proj_inn.lora_A.weight"] = torch.zeros(2, 16)
    sd["unet.down_blocks.9.attentions.0.proj_inn.lora_B.weight"] = torch.zeros(16, 2)
    save_file(sd, tmp_path / "extra.safetensors")

    with pytest.raises(ParityInputError) as err:
        read_lora(tmp_path / "extra.safetensors", sd15)
    assert "extra.safetensors" in str(err.value) and "proj_inn" in str(err.value)

    lenient = read_lora(tmp_path / "extra.safetensors", sd15, strict=False)
    assert lenient.unmatched == ["unet.down_blocks.9.attentions.0.proj_inn.lora_A.weight"]


def test_down_without_up_names_the_key(sd15, lora, tmp_path):
    sd, _ = to_state_dict(lora, "kohya")
    dropped = next(k for k in sorted(sd) if k.endswith("lora_up.weight"))
    del sd[dropped]
    save_file(sd, tmp_path / "half.safetensors")

    with pytest.raises(ParityInputError, match="without its up partner") as err:
        read_lora(tmp_path / "half.safetensors", sd15)
    assert dropped.replace("lora_up", "lora_down") in str(err.value)


def test_shape_mismatch_with_the_module_names_module_and_shapes(sd15, lora, tmp_path):
    sd, _ = to_state_dict(lora, "diffusers")
    key = next(k for k in sorted(sd) if k.endswith("to_q.lora_A.weight"))
    sd[key] = torch.zeros(sd[key].shape[0], sd[key].shape[1] + 1)
    save_file(sd, tmp_path / "shape.safetensors")

    with pytest.raises(ParityInputError, match="shape mismatch") as err:
        read_lora(tmp_path / "shape.safetensors", sd15)
    assert "shape.safetensors" in str(err.value)


def test_nan_in_a_lora_tensor_is_refused_with_its_module(sd15, lora, tmp_path):
    sd, _ = to_state_dict(lora, "diffusers")
    key = next(k for k in sorted(sd) if k.endswith("lora_B.weight"))
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    save_file(sd, tmp_path / "nan.safetensors")

    with pytest.raises(ParityInputError, match="NaN or Inf") as err:
        read_lora(tmp_path / "nan.safetensors", sd15)
    assert key.removesuffix(".lora_B.weight") in str(err.value)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("truncated.safetensors", None, "not a readable safetensors"),
        ("empty.safetensors", b"", "empty"),
        ("garbage.safetensors", b"\x00" * 64, "not a readable safetensors"),
        ("model.ckpt", b"PK\x03\x04", "pickle"),
    ],
)
def test_unreadable_files_are_one_clear_error_naming_the_file(sd15, lora, tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        save_lora(lora, path, "diffusers")
        path.write_bytes(path.read_bytes()[:-100])
    else:
        path.write_bytes(content)

    with pytest.raises(ParityInputError, match=message) as err:
        read_lora(path, sd15)
    assert name in str(err.value)
