"""A pinned finding is named in a user's verdict only where the run shows its own symptom: the same
layout failing in another way is not explained away by it."""

from __future__ import annotations

import torch

from parity.checks.findings import KOHYA_PER_MODULE_ALPHA
from parity.checks.known_findings import merge_findings
from parity.lora.neutral import LoraFile, LoraModule
from parity.tolerances import TensorReport
from parity.zoo import get_family

SD15 = get_family("sd15")


def _kohya(alphas: tuple[float, ...]) -> LoraFile:
    modules = {("unet", f"m{i}"): LoraModule("unet", f"m{i}", torch.zeros(4, 8), torch.zeros(8, 4), a)
               for i, a in enumerate(alphas)}
    return LoraFile(modules, "kohya")


def _failing(name: str, diagnosis: str) -> TensorReport:
    return TensorReport(name, 64, 1.0, 1e6, 1e5, 64, (0, 0), diagnosis)


ATTENTION = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"


def test_alpha_lost_on_attention_of_a_per_module_alpha_kohya_file_names_the_finding():
    reports = [_failing(ATTENTION, "0.75× the reference delta")]
    assert merge_findings(SD15, [_kohya((2.0, 3.0))], reports) == [KOHYA_PER_MODULE_ALPHA]


def test_the_same_failure_on_a_non_attention_module_is_not_explained_by_it():
    reports = [_failing(ATTENTION, "0.75× the reference delta"),
               _failing("unet.down_blocks.1.attentions.0.proj_in.weight", "0.75× the reference delta")]
    assert merge_findings(SD15, [_kohya((2.0, 3.0))], reports) == []


def test_a_file_with_one_alpha_everywhere_is_not_explained_by_it():
    reports = [_failing(ATTENTION, "0.75× the reference delta")]
    assert merge_findings(SD15, [_kohya((2.0, 2.0))], reports) == []
