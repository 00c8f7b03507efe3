"""Legacy layouts get a sentence a user understands (issue 30 item 7), derived from what diffusers 0.42.1
does with each, and pinned here so an upgrade that changes it shows:

* diffusers <= 0.14 ``save_attn_procs`` files (no ``unet.`` prefix): load_lora_weights keeps keys under
  unet./text_encoder. only and loads nothing (a logged warning); before, the check reported set_adapters'
  "Adapter name(s) {'a0'} not in the list of present adapters", which hid why.
* cloneofsimo ``lora_diffusion`` files (``unet:0:up``): read by rebuilding lora_diffusion's numbering from
  the module tree, then refused by diffusers, which has no loader for numbered keys.

Files from tests/support/legacy_files.py, written as those trainers' own save code did. Negative controls:
tests/harness/test_legacy_layout_controls.py.
"""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from parity.cli import main
from parity.lora.reader import read_lora
from tests.support.legacy_files import TEXT_ENCODER_REPLACE, UNET_REPLACE, attn_procs_014, cloneofsimo, find_linears
from tests.support.trainer_common import tiny_components


def fail_line(capsys: pytest.CaptureFixture[str], code: int) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and code == 1, out + err
    [line] = [line for line in out.splitlines() if line.startswith("FAIL: ")]
    return line


def test_a_diffusers_014_attn_procs_file_is_named_and_what_diffusers_does_said(tmp_path, capsys):
    path = attn_procs_014(tmp_path / "pytorch_lora_weights.safetensors")
    code = main(["check", "--family", "sd15", "--dtype", "float32", "--lora", str(path)])

    line = fail_line(capsys, code)
    assert line.startswith(f"FAIL: {path}: diffusers refused a valid diffusers-attn-procs file: ")
    assert "diffusers 0.42.1 loads nothing from this file (after the conversions it knows, load_lora_weights keeps " \
           "keys under unet./text_encoder. only; these have no prefix) and only logs a warning" in line
    assert "unet.load_lora_adapter(<file>, prefix=None) loads its pairs" in line
    assert "not in the list of present adapters" not in line


def test_a_cloneofsimo_file_is_read_by_its_numbering_and_its_refusal_names_the_format(tmp_path, capsys):
    path = cloneofsimo(tmp_path / "lora.safetensors")
    comps = tiny_components("sd15")
    lora = read_lora(path, comps)

    assert lora.layout == "cloneofsimo" and lora.unmatched == ["<s1>"]
    with safe_open(str(path), "pt") as f:
        for component, replace in (("unet", UNET_REPLACE), ("text_encoder", TEXT_ENCODER_REPLACE)):
            names = {id(m): n for n, m in comps[component].named_modules()}
            for i, linear in enumerate(find_linears(comps[component], replace)):
                module = lora.modules[(component, names[id(linear)])]
                assert torch.equal(module.down, f.get_tensor(f"{component}:{i}:down"))
                assert torch.equal(module.up, f.get_tensor(f"{component}:{i}:up"))
                assert module.effective_alpha == module.rank  # the scale is in the up factor
                assert set(lora.sources[(component, module.module)]) == {f"{component}:{i}:up", f"{component}:{i}:down"}

    code = main(["check", "--family", "sd15", "--dtype", "float32", "--lora", str(path)])
    line = fail_line(capsys, code)
    assert line.startswith(f"FAIL: {path}: diffusers refused a valid cloneofsimo file: a cloneofsimo lora_diffusion "
                           "file (keys 'unet:N:up'): its modules are numbered, not named, and diffusers 0.42.1 has no "
                           "loader for that (load_lora_weights: ValueError: Invalid LoRA checkpoint.")


# ---------------------------------------------------------------- what diffusers does, pinned


def test_diffusers_loads_nothing_from_an_attn_procs_file_but_load_lora_adapter_without_prefix_does(tmp_path):
    from parity.zoo import FAMILIES

    path = str(attn_procs_014(tmp_path / "pytorch_lora_weights.safetensors"))
    pipe = FAMILIES["sd15"].build_tiny(0)
    pipe.load_lora_weights(path, adapter_name="a")
    assert pipe.get_list_adapters() == {}
    pipe.unet.load_lora_adapter(path, prefix=None, adapter_name="b")
    scales = {n: layer.scaling["b"] for n, layer in pipe.unet.named_modules() if hasattr(layer, "scaling")}
    assert len(scales) == 32 and set(scales.values()) == {1.0}
    with pytest.raises(ValueError, match="Custom Diffusion"):
        pipe.unet.load_attn_procs(path)


def test_diffusers_refuses_a_cloneofsimo_file(tmp_path):
    from parity.zoo import FAMILIES

    pipe = FAMILIES["sd15"].build_tiny(0)
    with pytest.raises(ValueError, match="Invalid LoRA checkpoint"):
        pipe.load_lora_weights(str(cloneofsimo(tmp_path / "lora.safetensors")), adapter_name="a")
