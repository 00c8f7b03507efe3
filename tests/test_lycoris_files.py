"""`lora-parity check` on DoRA, LoHa, LoKr and tucker files (issue 19), written as LyCORIS and PEFT
write them (tests/support/algorithm_files.py with tests/support/trainer_lycoris.py, which share no code with parity.lora), on the families
whose trainers produce them: every algorithm on SD1.5 and SDXL, DoRA and LoKr on FLUX.1 and Qwen-Image.

The cases are data (``algorithm_cases`` in parity/checks/cases.py), each with what diffusers 0.42.1 does:
nothing wrong, the DoRA magnitude dropped (DORA_SCALE_DROPPED), or the file refused (LYCORIS_REFUSED). The
generic check runs them all, the findings as strict expected failures; a second test pins the verdict
`lora-parity check` prints for each. The negative controls of the formulas are
tests/harness/test_variant_negative_controls.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from parity.checks.cases import AlgorithmCase, algorithm_cases
from parity.checks.check import CheckRequest, run_check
from parity.checks.findings import DORA_SCALE_DROPPED, LYCORIS_REFUSED
from parity.cli import main
from parity.pytest.cases import params
from tests.support.algorithm_files import write_file
from tests.support.cli import assert_one_line_error
from tests.support.trainer_common import tiny_components
from tests.support.trainer_files import keys_of
from tests.support.trainer_flux import bfl_modules
from tests.support.trainer_lycoris import lycoris_state_dict, save

# What the verdict says the file is, where diffusers refuses it
REFUSED_AS = {"locon-tucker": "LoCon (tucker)", "loha": "LoHa", "loha-tucker": "LoHa", "loha-dora": "DoRA (LoHa)",
              "lokr": "LoKr", "lokr-tucker": "LoKr"}
CASES = algorithm_cases()


def modules_of(path: Path) -> int:
    """Modules a file sets: one per lora_A / lora_down (each file module here reaches one model module)."""
    return sum(k.endswith((".lora_A.weight", ".lora_down.weight")) for k in keys_of(path))


def component_of(family: str) -> str:
    return "unet" if family in ("sd15", "sd2", "sdxl") else "transformer"


def _dtypes(case: AlgorithmCase) -> tuple[str, ...]:
    # DoRA's bound has a norm and a division in it: held in both dtypes; a refusal needs one
    return ("float32", "bfloat16") if case.known is not LYCORIS_REFUSED else ("float32",)


@pytest.mark.parametrize("case", params(CASES))
def test_the_fused_file_matches_its_algorithms_reference(case: AlgorithmCase, tmp_path: Path) -> None:
    """The generic check: diffusers loads the file and its fused weights are our reference merge. The
    case table's findings make the DoRA files whose magnitude diffusers drops, and the files it refuses,
    strict expected failures."""
    path = write_file(case.family, case.file, tmp_path)
    report = run_check(CheckRequest(case.family, (str(path),), dtypes=_dtypes(case)))
    assert report.ok, "\n".join(f for r in report.results for f in r.failures)


# the case table's slow mark, not its strict xfail: this test asserts each finding's verdict itself
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES])
def test_check_names_what_diffusers_does_with_each_algorithm(case: AlgorithmCase, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`lora-parity check`'s verdict: PASS with every key accounted for and the algorithm named, the
    dropped magnitude named per module with the finding, or the refusal naming the algorithm and
    carrying diffusers' own error."""
    path = write_file(case.family, case.file, tmp_path)
    code = main(["check", "--family", case.family, "--dtype", ",".join(_dtypes(case)), "--lora", str(path), "-q"])
    out, err = capsys.readouterr()
    text = out + err
    assert "Traceback" not in text
    if case.known is None:
        row = next(line for line in out.splitlines() if str(path) in line)
        assert code == 0 and "PASS" in out, text
        assert row.split()[2:6] == [str(len(keys_of(path))), str(modules_of(path)), f"({component_of(case.family)}",
                                    f"{modules_of(path)})"] and row.split()[6] == "0", row  # every key read
        assert row.split()[8:] == ["DoRA"], row  # the algorithm named beside the layout
    elif case.known is DORA_SCALE_DROPPED:
        failing = [line for line in out.splitlines() if "elements over bound" in line]
        assert code == 1 and failing and all("the DoRA magnitude was dropped" in line and ".dora_scale" in line
                                             for line in failing), text
        assert "known diffusers behaviour: diffusers drops the dora_scale keys" in text, text
    else:
        # FLUX.1's loader drops the modules and loads nothing (a logged warning); the others raise
        why = "load_lora_weights loaded no adapter from it" if case.family == "flux" else "ValueError: "
        assert code == 1 and f"diffusers cannot load {REFUSED_AS[case.file]} files ({why}" in text, text


@pytest.mark.parametrize("algo", ["lokr", "loha"])
def test_a_lycoris_file_on_flux_fused_modules_is_read_per_module_and_refused(algo: str, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """kohya's lora_flux.py names FLUX.1's fused qkv and linear1: each diffusers module they set gets its
    rows of the whole ΔW (parity/lora/neutral.py RowsOf), and diffusers, which has no loader for them,
    loads nothing."""
    transformer = tiny_components("flux")["transformer"]
    shapes = {name.replace(".", "_"): (out, fan_in) for name, out, fan_in in bfl_modules(transformer)
              if name in ("double_blocks.0.img_attn.qkv", "single_blocks.0.linear1")}
    path = save(lycoris_state_dict(shapes, algo, rank=2), str(tmp_path / f"flux-{algo}.safetensors"))
    from parity.lora.reader import read_lora  # the reader alone: how the fused modules were split

    lora = read_lora(path, {"transformer": transformer})
    assert len(lora.modules) == 7  # to_q, to_k, to_v; and to_q, to_k, to_v, proj_mlp of the single block
    code = main(["check", "--family", "flux", "--dtype", "float32", "--lora", path, "-q"])
    text = "".join(capsys.readouterr())
    assert code == 1 and f"diffusers cannot load {REFUSED_AS[algo]} files" in text, text


def test_two_adapters_on_one_weight_with_dora_among_them_are_refused_in_one_line(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture[str]):
    """PEFT merges each DoRA adapter against the unmerged base; the reference has no such stack yet, so
    check says so, naming the file and key, before anything loads."""
    first = write_file("sd15", "peft-dora", tmp_path)
    (tmp_path / "second").mkdir()
    second = write_file("sd15", "peft-dora", tmp_path / "second")
    code = main(["check", "--family", "sd15", "--lora", str(first), "--lora", str(second), "-q"])
    assert_one_line_error(capsys, code, str(second), "DoRA and another adapter on unet.", "not supported")


def test_hotswap_refuses_a_file_of_another_algorithm_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = write_file("sd15", "loha", tmp_path)
    code = main(["hotswap", "--family", "sd15", "--lora", str(path), "--lora", str(path), "-q"])
    assert_one_line_error(capsys, code, str(path), "holds LoHa modules", "plain LoRA factors only")
