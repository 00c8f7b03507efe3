"""parity/lora/algorithms.py (the DoRA, LoHa, LoKr and tucker files the compatibility matrix writes) against
tests/support/trainer_lycoris.py, a writer that shares no code with it: for every family × file kind of
the case table (ALGORITHMS_BY_FAMILY), the same keys, shapes and dtypes, and the same verdict from
``run_check``. The trainer's files are tests/support/algorithm_files.py's, the ones tests/test_lycoris_files.py
checks. Negative controls: a transposed tensor, a renamed key
and a cast tensor are each caught by the comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from parity.checks.cases import ALGORITHM_FILES, ALGORITHM_SLOW_FAMILIES, ALGORITHMS_BY_FAMILY, algorithm_cases
from parity.checks.check import CheckRequest, known_behaviour, run_check
from parity.checks.findings import LYCORIS_REFUSED
from parity.errors import LoaderRefused
from parity.lora import algorithms
from parity.lora.algorithms import write_algorithm_file
from parity.zoo import FAMILIES
from tests.support.algorithm_files import MODULES, write_file
from tests.support.trainer_common import tiny_components
from tests.support.trainer_lycoris import factorization

CASES = [(family, kind) for family, kinds in ALGORITHMS_BY_FAMILY.items() for kind in kinds]
KNOWN = {(case.family, case.file): case.known for case in algorithm_cases()}


def trainer_file(family: str, kind: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_file(family, kind, folder)


def our_file(family: str, kind: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_algorithm_file(family, kind, folder, components=tiny_components(family))


def differences(ours: Mapping[str, torch.Tensor], theirs: Mapping[str, torch.Tensor]) -> list[str]:
    """What tells two files apart by their keys, shapes and dtypes (values may differ)."""
    out = [f"only in ours: {k}" for k in sorted(set(ours) - set(theirs))]
    out += [f"only in the trainer's: {k}" for k in sorted(set(theirs) - set(ours))]
    for k in sorted(set(ours) & set(theirs)):
        a, b = ours[k], theirs[k]
        if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
            out.append(f"{k}: ours {tuple(a.shape)} {a.dtype}, the trainer's {tuple(b.shape)} {b.dtype}")
    return out


def verdict(family: str, path: Path) -> tuple:
    """What ``run_check`` says of a file, without its path: refused (the layout, what it could not load,
    the finding) or the report (ok, the weights over their bound, the findings, the file's algorithms)."""
    try:
        report = run_check(CheckRequest(family, (str(path),), dtypes=("float32",)))
    except LoaderRefused as exc:
        return "refused", exc.layout, exc.reason.split(" files (")[0], exc.known
    file = report.files[0]
    return (report.ok, file.layout, tuple(file.algorithms), dict(file.matched), tuple(file.unmatched),
            tuple(sorted(n for r in report.results for n in r.failing)), tuple(report.known))


def test_the_file_kinds_are_the_case_tables() -> None:
    assert algorithms.ALGORITHM_FILES == ALGORITHM_FILES
    assert set(algorithms.ALGORITHM_MODULES) == set(ALGORITHMS_BY_FAMILY)
    assert algorithms.ALGORITHM_MODULES == MODULES  # the modules the trainer's files set


def test_factorization_is_lycoris() -> None:
    """lycoris/functional/general.py ``factorization``, as the trainer helper has it line for line."""
    for factor in (-1, 0, 1, 2, 3, 4, 8, 16):
        assert [algorithms.factorization(n, factor) for n in range(1, 600)] == \
               [factorization(n, factor) for n in range(1, 600)], factor


@pytest.mark.parametrize(("family", "kind"), CASES, ids=[f"{f}-{k}" for f, k in CASES])
def test_same_keys_shapes_and_dtypes_as_the_trainer_helper(family: str, kind: str, tmp_path: Path) -> None:
    ours = load_file(our_file(family, kind, tmp_path / "ours"))
    theirs = load_file(trainer_file(family, kind, tmp_path / "trainer"))
    assert differences(ours, theirs) == []
    assert all(t.dtype == torch.float32 for t in ours.values())
    assert all(torch.isfinite(t).all() for t in ours.values())


# the case table's slow mark: sd2's files go through sd15's loader onto layer types sd15 and sdxl hold
VERDICT_PARAMS = [pytest.param(f, k, id=f"{f}-{k}", marks=[pytest.mark.slow] if f in ALGORITHM_SLOW_FAMILIES else [])
                  for f, k in CASES]


@pytest.mark.parametrize(("family", "kind"), VERDICT_PARAMS)
def test_run_check_gives_both_files_one_verdict(family: str, kind: str, tmp_path: Path) -> None:
    """The same verdict, down to the weights over their bound and the findings named; and it is the
    case table's (tests/test_lycoris_files.py holds the trainer's file to it in every dtype)."""
    ours = verdict(family, our_file(family, kind, tmp_path / "ours"))
    theirs = verdict(family, trainer_file(family, kind, tmp_path / "trainer"))
    assert ours == theirs
    known = KNOWN[(family, kind)]
    if known is LYCORIS_REFUSED:
        assert ours[0] == "refused" and ours[-1] == known_behaviour(known), ours
    else:  # PASS, or (the DoRA magnitude dropped) FAIL with the finding named
        assert ours[0] is (known is None) and ours[-1] == (() if known is None else (known_behaviour(known),)), ours


def test_without_components_the_writer_builds_the_same_file(tmp_path: Path) -> None:
    built = load_file(write_algorithm_file("qwenimage", "lokr", tmp_path))
    given = load_file(our_file("qwenimage", "lokr", tmp_path / "given"))
    assert built.keys() == given.keys() and all(torch.equal(built[k], given[k]) for k in built)


def test_the_delta_and_the_magnitude_are_visible(tmp_path: Path) -> None:
    """ΔW near 0.4 × the weight (alpha/rank 1/2 applied), the DoRA magnitude 10-25 % off ‖W + ΔW‖ per row."""
    unet = tiny_components("sd15")["unet"]
    layers = dict(unet.named_modules())
    sd = load_file(our_file("sd15", "lycoris-dora", tmp_path))
    prefix = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q."
    weight = layers["down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"].weight.detach().double()
    up, down = sd[prefix + "lora_up.weight"].double(), sd[prefix + "lora_down.weight"].double()
    delta = float(sd[prefix + "alpha"]) / down.shape[0] * up @ down
    ratio = delta.pow(2).mean().sqrt() / weight.pow(2).mean().sqrt()
    assert abs(float(ratio) - algorithms.DELTA_RATIO) < 1e-3
    off = (sd[prefix + "dora_scale"].double().flatten() / (weight + delta).norm(dim=1) - 1).abs()
    assert bool(((off > 0.0999) & (off < 0.2501)).all()), off


@pytest.mark.parametrize("break_it", ["transpose", "rename", "cast"])
def test_the_comparison_catches_a_changed_file(break_it: str, tmp_path: Path) -> None:
    """Negative controls: the trainer's own file, one tensor transposed, one key renamed or one tensor
    cast to float16, is told apart from ours, naming the key."""
    ours = load_file(our_file("sd15", "lokr", tmp_path / "ours"))
    theirs = load_file(trainer_file("sd15", "lokr", tmp_path / "trainer"))
    assert differences(ours, theirs) == []
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q.lokr_w2_a"  # (4, 2): not square
    if break_it == "transpose":
        theirs[key] = theirs[key].T.contiguous()
    elif break_it == "rename":
        theirs[key.replace("attn1", "attn2")] = theirs.pop(key)
    else:
        theirs[key] = theirs[key].half()
    found = differences(ours, theirs)
    assert found and all(key.split(".")[0] in line or "attn2" in line for line in found), found
    assert len(found) == (2 if break_it == "rename" else 1), found


def test_a_family_without_algorithm_files_is_refused_by_name(tmp_path: Path) -> None:
    other = next(name for name in FAMILIES if name not in algorithms.ALGORITHM_MODULES)
    with pytest.raises(ValueError, match=f"no algorithm files for family '{other}'"):
        write_algorithm_file(other, "lokr", tmp_path)
    with pytest.raises(ValueError, match="unknown algorithm file 'boft'"):
        write_algorithm_file("sd15", "boft", tmp_path)
