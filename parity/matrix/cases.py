"""The matrix's rows, drawn from the suite's case table (parity/checks/cases.py) as data: every family's
layouts (the regular ones, the finding layouts, a several-denoiser family's experts) × the checks below, and
one hotswap session per family and layout it swaps. A user's own files (``lora-parity matrix --lora``) are
rows of their own: each file's merge and unfuse, as ``lora-parity check`` measures them.

A ``MatrixCase`` is plain data that survives JSON: the driver writes the list, the worker in each version
set's environment reads it back and runs it, so both sides agree on the rows even where a version set lacks
a family (its cells say "unavailable").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from parity.matrix.schema import Row

# check name -> (adapter set of parity.checks.cases.ADAPTER_WEIGHTS, lora_scale, what it measures). The two
# adapters carry per-module rank and alpha (kohya resize_lora --dynamic_method), the no-alpha file α = r per
# module (diffusers PR #14409), the bfloat16 file α/r = 0.75 stored in bfloat16: the three adapter sets the
# merge cases' representative combinations take (COMBINATIONS), each a different way converters go wrong.
MERGE_CHECKS = {
    "merge": (2, 1.3, "fuse_lora of two adapters (weights 0.7, 0.8, per-module rank and alpha) at lora_scale 1.3"),
    "merge-noalpha": ("noalpha", 1.0, "fuse_lora of a file without alpha keys, mixed ranks (α = r)"),
    "merge-bf16": ("bf16", 1.0, "fuse_lora of a file stored in bfloat16, α/r = 0.75"),
}
UNFUSE_WHAT = "fuse_lora then unfuse_lora of the two adapters: the base weights back within the drift bound"
FINDING_WHAT = "fuse_lora of one file at 1.0 (a layout the suite pins a finding on)"
HOTSWAP_WHAT = ("hotswap into the torch.compile'd denoiser (model level, error_on_recompile): no recompile, "
                "the output of a fresh load")
ALGORITHM_WHAT = "lora-parity check of a {kind} file, as its trainer writes it: fuse_lora against the algorithm's formula"
FILE_WHAT = {"merge": "lora-parity check: fuse_lora against the reference merge",
             "unfuse": "lora-parity check: fuse then unfuse_lora, the base weights back within the bound"}
CHECKS = (*MERGE_CHECKS, "unfuse", "hotswap", "algorithm")


@dataclass(frozen=True)
class MatrixCase:
    family: str
    layout: str  # a parity.lora.layouts name, an ALGORITHM_FILES kind (check "algorithm"), or the user's file path
    check: str  # merge | merge-noalpha | merge-bf16 | unfuse | hotswap | algorithm | file-merge | file-unfuse
    targets: str = "default"
    expert: str = ""
    adapters: int | str = 1
    scale: float = 1.0
    finding: bool = False  # one of the case table's FINDING_LAYOUTS
    model_path: str | None = None  # user files: the model they are checked on (None: tiny, or published)

    @property
    def layout_id(self) -> str:
        """The layout case's id without its family (parity.checks.cases.LayoutCase.id)."""
        if self.check.startswith("file-"):
            return self.layout.rsplit("/", 1)[-1]
        return (self.layout + ("" if self.targets == "default" else f"-{self.targets}")
                + (f"-{self.expert}" if self.expert else ""))

    @property
    def id(self) -> str:
        return f"{self.family}/{self.layout_id}/{self.check}"

    @property
    def load(self) -> tuple[Any, ...]:
        """Cases with the same load share one loaded pipeline in the worker (a deep copy each)."""
        return (self.family, self.layout, self.targets, self.expert, self.adapters)

    def row(self) -> Row:
        if self.check.startswith("file-"):
            what = FILE_WHAT[self.check.removeprefix("file-")]
        elif self.check in MERGE_CHECKS:
            what = FINDING_WHAT if self.finding else MERGE_CHECKS[self.check][2]
        elif self.check == "algorithm":
            what = ALGORITHM_WHAT.format(kind=self.layout)
        else:
            what = UNFUSE_WHAT if self.check == "unfuse" else HOTSWAP_WHAT
        return Row(self.id, self.family, self.layout_id, self.check.removeprefix("file-"), what)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MatrixCase:
        return cls(**data)


def _layout_rows(families: list[str] | None, checks: tuple[str, ...]) -> list[MatrixCase]:
    from parity.checks.cases import FINDING_LAYOUTS, layout_cases

    out = []
    for lc in layout_cases(families):
        for check in checks:
            if check in MERGE_CHECKS:
                adapters, scale, _ = MERGE_CHECKS[check]
                out.append(MatrixCase(lc.family, lc.layout, check, lc.targets, lc.expert, adapters, scale))
            elif check == "unfuse":
                out.append(MatrixCase(lc.family, lc.layout, "unfuse", lc.targets, lc.expert, 2, 1.0))
    if "merge" in checks:
        out += [MatrixCase(lc.family, lc.layout, "merge", lc.targets, lc.expert, 1, 1.0, finding=True)
                for lc in FINDING_LAYOUTS if families is None or lc.family in families]
    return out


def _hotswap_rows(families: list[str] | None) -> list[MatrixCase]:
    from parity.zoo import FAMILIES

    out = []
    for fam in FAMILIES.values():
        if families is None or fam.name in families:
            # the diffusers layout, and the family's second (kohya, XLabs, diffusion_model) as its users swap them
            out += [MatrixCase(fam.name, layout, "hotswap") for layout in fam.layouts[:2]]
    return out


def _algorithm_rows(families: list[str] | None) -> list[MatrixCase]:
    from parity.checks.cases import algorithm_cases

    # the case table's family × algorithm (the families whose trainers publish DoRA, LoHa, LoKr, tucker)
    return [MatrixCase(c.family, c.file, "algorithm") for c in algorithm_cases(families)]


def matrix_cases(families: list[str] | None = None, checks: tuple[str, ...] = CHECKS) -> list[MatrixCase]:
    """Every row of the tiny zoo's matrix, in the case table's order: each family's layouts × ``checks``."""
    rows = _layout_rows(families, checks) + (_hotswap_rows(families) if "hotswap" in checks else []) \
        + (_algorithm_rows(families) if "algorithm" in checks else [])
    order = {name: i for i, name in enumerate(dict.fromkeys(c.family for c in rows))}
    return sorted(rows, key=lambda c: order[c.family])  # stable: within a family the table's order


def file_cases(family: str, files: list[str], model_path: str | None = None) -> list[MatrixCase]:
    """A user's files: each one's merge and unfuse on the family's model (tiny, published, or ``model_path``)."""
    return [MatrixCase(family, path, f"file-{check}", model_path=model_path) for path in files
            for check in ("merge", "unfuse")]
