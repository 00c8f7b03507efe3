"""The gate's evidence reads at a glance (parity/runs/evidence.py): changed tests grouped by check, family
and layout with a count and their shared message, and a growth that is there shows digits that show it."""

from __future__ import annotations

from dataclasses import dataclass

from parity.runs.evidence import common_message, distinct, group_changes, growth_ratio, id_parts

FAMILIES = ["sd15", "sdxl", "flux", "qwenimage", "qwenimage-edit"]


@dataclass(frozen=True)
class Change:
    test: str
    message: str


def test_a_test_id_names_its_check_family_and_layout():
    merge = "tests/test_merge_parity.py::test_fuse_matches_reference_merge"
    assert id_parts(f"{merge}[flux-kohya-bfl-float32-cpu-s1-x1]@loaded-flux", FAMILIES) == \
        ("test_fuse_matches_reference_merge", "flux", "kohya-bfl")
    assert id_parts(f"{merge}[qwenimage-edit-diffusers-alpha-float32-cpu-s1-x1]", FAMILIES) == \
        ("test_fuse_matches_reference_merge", "qwenimage-edit", "diffusers-alpha")  # the longest family
    assert id_parts("tests/test_cli.py::test_help", FAMILIES) == ("test_help", "-", "-")


def test_many_tests_of_one_check_family_and_layout_are_one_row_with_their_count():
    merge = "tests/test_merge_parity.py::test_fuse_matches_reference_merge"
    changes = [Change(f"{merge}[flux-kohya-bfl-{dtype}-cpu-s{s}-x1]", "finding: widths") for dtype in
               ("float32", "bfloat16") for s in (0, 1)]
    changes += [Change(f"{merge}[sd15-kohya-float32-cpu-s1-x2]", "2x the reference delta")]
    groups = group_changes(changes, FAMILIES)
    assert [(g.check, g.family, g.layout, g.count, g.message) for g in groups] == [
        ("test_fuse_matches_reference_merge", "flux", "kohya-bfl", 4, "finding: widths"),
        ("test_fuse_matches_reference_merge", "sd15", "kohya", 1, "2x the reference delta"),
    ]


def test_a_message_not_all_share_says_how_many_do():
    assert common_message(["a\ndetail", "a", "b"]) == "a (2 of 3)"


def test_a_growth_shows_the_digits_that_show_it():
    assert distinct(0.5, 0.5004) == ("0.5000", "0.5004")  # issue 17: "0.50 → 0.50"
    assert distinct(1.0, 2.5) == ("1.00", "2.50")
    assert growth_ratio(0.5, 0.5004) == "×1.001"


def _verdict(changes: dict[str, tuple[str, str]]):
    from pathlib import Path

    from parity.runs.gate import Bundle, judge
    from parity.runs.junit import Outcome

    def bundle(which: int) -> Bundle:
        outcomes = {t: Outcome(t, statuses[which]) for t, statuses in changes.items()}
        return Bundle(Path("."), {}, outcomes, {}, {}, None)

    return judge(bundle(0), bundle(1))


GOLDEN_XLABS = "tests.test_golden::test_golden[flux-xlabs-1.0]"
MERGE_XLABS = "tests.test_merge_parity::test_fuse_matches_reference_merge[flux-xlabs-float32-cpu-s1-x1]"
MERGE_KOHYA_BFL = "tests.test_merge_parity::test_fuse_matches_reference_merge[flux-kohya-bfl-float32-cpu-s1-x1]"


def test_a_golden_image_that_moved_where_the_old_merge_was_wrong_is_not_a_regression():
    verdict = _verdict({GOLDEN_XLABS: ("passed", "failed"), MERGE_XLABS: ("failed", "passed")})
    assert verdict.ok and [c.test for c in verdict.moved_by_fix] == [GOLDEN_XLABS]


def test_a_golden_image_that_moved_is_a_regression_where_its_layouts_checks_did_not_go_from_fail_to_pass():
    # the controls: no fix of its own layout (another layout's fix does not count), or a fix that left a check failing
    other = _verdict({GOLDEN_XLABS: ("passed", "failed"), MERGE_KOHYA_BFL: ("failed", "passed")})
    assert not other.ok and [c.test for c in other.regressions] == [GOLDEN_XLABS]
    half = _verdict({GOLDEN_XLABS: ("passed", "failed"), MERGE_XLABS: ("failed", "passed"),
                     MERGE_XLABS.replace("x1]", "x2]"): ("failed", "failed")})
    assert not half.ok and [c.test for c in half.regressions] == [GOLDEN_XLABS]
