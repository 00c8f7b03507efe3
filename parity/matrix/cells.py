"""A check's outcome as one cell: the state, and for a wrong one how, from what the check measured.

The words come from the checks' own diagnoses (parity/checks/diagnosis.py for a fused weight, the unfuse
drift against its bound, a hotswap's recompiles and output budgets), never from comparing versions: a cell
says what that version set does against the reference, by itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from parity.matrix.schema import Cell

# diagnosis phrase (its start, or a part of it) -> how; the first that matches wins, so the specific ones first
_DIAGNOSIS_HOW = (
    ("wrong split: its output halves are swapped", "swapped"),
    ("wrong split", "split"),
    ("dropped", "dropped"),
    ("sign error", "sign"),
    ("an extra rounding", "rounding"),
    ("the reference adds nothing here", "untargeted"),
    ("× the reference delta", "scaled"),
)
MAX_EVIDENCE = 12


def first_line(text: str, limit: int = 240) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def how_of_diagnosis(diagnosis: str) -> str:
    for phrase, how in _DIAGNOSIS_HOW:
        if phrase in diagnosis:
            return how
    return "other"


def merge_cell(diagnoses: Sequence[str], n_weights: int, untargeted: Sequence[str], missing: Sequence[str],
               evidence: Sequence[str], seconds: float) -> Cell:
    """A fuse measured weight by weight: ``diagnoses`` of the weights over their bound, worst first."""
    if not diagnoses and not untargeted and not missing:
        if n_weights == 0:
            return Cell("wrong", "dropped", "the case targeted no weight", tuple(evidence), seconds)
        return Cell("correct", summary=f"{n_weights} weights within their bounds", seconds=seconds)
    hows = Counter(how_of_diagnosis(d) for d in diagnoses)
    if hows:
        # the most common how across the failing weights; the worst weight's diagnosis as the summary
        how = max(hows, key=lambda h: (hows[h], h == how_of_diagnosis(diagnoses[0])))
        # the worst weight that shows that how speaks for the cell
        shown = next(d for d in diagnoses if how_of_diagnosis(d) == how)
        summary = f"{len(diagnoses)} of {n_weights} weights: {shown or 'over its bound'}"
    elif missing:
        how, summary = "missing", f"{len(missing)} targeted weights missing after fuse: {missing[0]}"
    else:
        how, summary = "untargeted", f"{len(untargeted)} weights no adapter targets changed: {untargeted[0]}"
    return Cell("wrong", how, first_line(summary), tuple(evidence[:MAX_EVIDENCE]), seconds)


def unfuse_cell(bound_ratio: float, max_ulps: float, untargeted: Sequence[str], seconds: float,
                extra: Sequence[str] = ()) -> Cell:
    if untargeted:
        return Cell("wrong", "untargeted", f"unfuse changed {len(untargeted)} untargeted weights: {untargeted[0]}",
                    tuple(untargeted[:MAX_EVIDENCE]), seconds)
    if bound_ratio > 1.0:
        return Cell("wrong", "drift", f"drift {max_ulps:.3g} ULP after one cycle, {bound_ratio:.3g}× its bound",
                    tuple(extra[:MAX_EVIDENCE]), seconds)
    if extra:  # the unfused pipeline differs from the loaded one (parity/checks/unfused_state.py)
        return Cell("wrong", "other", first_line(extra[0]), tuple(extra[:MAX_EVIDENCE]), seconds)
    return Cell("correct", summary=f"drift {max_ulps:.3g} ULP, {bound_ratio:.2f} of its bound", seconds=seconds)


def hotswap_cell(recompiled: bool, refused: str | None, failures: Sequence[str], seconds: float) -> Cell:
    if refused:
        return Cell("refused", summary=first_line(refused), evidence=tuple(failures[:MAX_EVIDENCE]), seconds=seconds)
    if recompiled:
        return Cell("wrong", "recompiled", first_line(failures[0] if failures else "recompiled"),
                    tuple(failures[:MAX_EVIDENCE]), seconds)
    if failures:
        return Cell("wrong", "output", first_line(failures[0]), tuple(failures[:MAX_EVIDENCE]), seconds)
    return Cell("correct", summary="no recompile; the output of a fresh load", seconds=seconds)


def refused_cell(reason: str, seconds: float, evidence: Sequence[str] = ()) -> Cell:
    return Cell("refused", summary=first_line(reason), evidence=tuple(evidence[:MAX_EVIDENCE]), seconds=seconds)


def error_cell(what: str, seconds: float = 0.0, evidence: Sequence[str] = ()) -> Cell:
    return Cell("error", summary=first_line(what), evidence=tuple(evidence[:MAX_EVIDENCE]), seconds=seconds)


def unavailable_cell(why: str) -> Cell:
    return Cell("unavailable", summary=first_line(why))
