"""The merge check on fused and renamed layouts must catch what a wrong loader does: a key dropped,
fused q|k|v split in the wrong order, alpha ignored. Each control feeds diffusers or our reference
one broken thing and asserts the failure names the module or key and says what is off.

The file is XLabs FLUX.1 (fused qkv, which diffusers splits correctly on the tiny model) and a kohya
SDXL file on SGM names; both pass untouched (the first test), so a failure below is the control's.
"""

from __future__ import annotations

import pytest

from parity.checks.cases import LayoutCase, LoraSpec
from parity.checks.fuse import fuse_and_measure, load_files
from parity.checks.prepare import prepare
from parity.lora import names as names_pkg
from parity.lora.names import bfl
from parity.lora.reader import read_lora
from parity.lora.tensors import load_tensors
from parity.zoo import get_family

SPEC = (LoraSpec(seed=1, rank=4, alpha=2.0),)
XLABS = LayoutCase("flux", "xlabs")
SGM = LayoutCase("sdxl", "kohya-sgm")


def _fused(prep, loras_for_reference, diffusers_source=None):
    family = get_family(prep.family.name)
    loaded = load_files(prep.pipe, family, [diffusers_source or prep.loras[0]], [1.0])
    return fuse_and_measure(loaded.pipe, loaded.components, loaded.before, loras_for_reference, [1.0], 1.0)


@pytest.mark.parametrize("case", [XLABS, SGM], ids=lambda c: c.id)
def test_renamed_layout_fuses_to_the_reference_untouched(case, tmp_path):
    prep = prepare(case, SPEC, "float32", "cpu", str(tmp_path))
    result = _fused(prep, prep.loras)
    assert result.ok, result.failures()


def test_a_key_diffusers_never_sees_fails_naming_the_key(tmp_path):
    prep = prepare(XLABS, SPEC, "float32", "cpu", str(tmp_path))
    tensors, _ = load_tensors(prep.paths[0])
    dropped = sorted(k for k in tensors if "proj_lora1" in k)
    given = {k: v for k, v in tensors.items() if k not in dropped}
    short = read_lora(given, prep.components)
    short.raw = given  # what diffusers is handed

    result = _fused(prep, prep.loras, diffusers_source=short)

    assert not result.ok
    text = "\n".join(result.failures(limit=50))
    assert "to_out.0.weight" in text and "dropped" in text and dropped[0] in text


def test_a_wrong_qkv_split_in_the_reference_fails_and_says_so(tmp_path, monkeypatch):
    prep = prepare(XLABS, SPEC, "float32", "cpu", str(tmp_path))
    # our reference reads k|q|v where the file (and diffusers) mean q|k|v
    monkeypatch.setitem(bfl.XLABS_SINGLE, "processor.qkv_lora", ["attn.to_k", "attn.to_q", "attn.to_v"])
    wrong = read_lora(prep.paths[0], prep.components)
    monkeypatch.undo()

    result = _fused(prep, [wrong])

    text = "\n".join(result.failures(limit=50))
    assert not result.ok and "single_transformer_blocks.0.attn.to_q.weight" in text
    assert "wrong split" in text and "to_k.weight" in text


def test_alpha_ignored_by_the_loader_fails_with_the_fitted_ratio(tmp_path):
    prep = prepare(SGM, SPEC, "float32", "cpu", str(tmp_path))
    tensors, _ = load_tensors(prep.paths[0])
    given = {k: v for k, v in tensors.items() if not k.endswith(".alpha")}
    no_alpha = read_lora(given, prep.components)
    no_alpha.raw = given

    result = _fused(prep, prep.loras, diffusers_source=no_alpha)

    assert not result.ok
    assert "2× the reference delta: alpha not applied?" in "\n".join(result.failures())


def test_names_package_is_what_the_reader_resolves_through():
    # The wrong-split control patches bfl's table: it must be the one the reader uses.
    assert names_pkg.bfl is bfl
