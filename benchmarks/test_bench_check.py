"""`lora-parity check` against its floor (parity/bench/checkcost.py): from_pretrained +
load_lora_weights + fuse_lora + unfuse_lora on the same folder and files, timed in interleaved rounds.

The recorded number is the median per-round ratio check/floor; the report marks it against issue 15's
bound of 1.5. On the tiny zoo each family's pipeline is saved as a folder first; with
``--model-path DIR`` (and ``--lora FILE``, else a synthesised LoRA) it runs on the user's model:
``make bench ARGS="--family sd15 --model-path DIR --lora FILE -k check_against_its_floor"``.
"""

from __future__ import annotations

import pytest

from parity.bench import record as rec
from parity.bench.checkcost import CostSubject, folder_subject, time_check_against_floor, tiny_subject
from parity.bench.modes import DENOISER_ONLY
from parity.bench.run import rounds_for
from parity.checks.cases import BenchCase, bench_cases
from parity.pytest.cases import params
from parity.tolerances import dtype_from_name
from parity.zoo import get_family

CASES = params(bench_cases({rec.CHECK_VS_FLOOR: False}))
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@pytest.fixture
def cost_subject(request: pytest.FixtureRequest, case: BenchCase, device: str, model_path: str | None,
                 tmp_path_factory: pytest.TempPathFactory) -> CostSubject:
    family, dtype = get_family(case.family), dtype_from_name(case.dtype)
    directory = str(tmp_path_factory.mktemp(f"check-cost-{case.family}"))
    if model_path is None:
        if request.config.getoption("--bench-size") in DENOISER_ONLY:
            pytest.skip("check against its floor beyond the tiny size needs a model folder: pass --model-path DIR")
        return tiny_subject(family, directory, dtype, device)
    loras = request.config.getoption("--lora")
    if any(str(p).lower().endswith(PICKLE_SUFFIXES) for p in loras):
        pytest.skip("the floor hands the file to diffusers' load_lora_weights, which would unpickle it")
    return folder_subject(family, model_path, loras, directory, dtype, device)


@pytest.mark.benchmark
@pytest.mark.parametrize("case", CASES)
def test_check_against_its_floor(benchmark, case: BenchCase, cost_subject: CostSubject,
                                 bench_rounds: int | None) -> None:
    rounds = rounds_for(cost_subject.size, rec.CHECK, bench_rounds)
    timed = time_check_against_floor(benchmark, cost_subject, rounds.rounds, rounds.warmup)
    if cost_subject.size == "tiny":
        # the synthesised file fuses correctly: a failing check here would time something else
        assert all(report.ok for report in timed.reports), [r.results for r in timed.reports if not r.ok]
