"""Hotswapping into a compiled quantized denoiser (``lora-parity hotswap --quantization NAME``) never
recompiles and gives the output a fresh load on the same quantized base gives.

One compiled session per family × quantizer, shared by the swaps into it (the first file is rank 4,
the swapped ones 4, 8 and 2 at target rank 8, as tests/test_hotswap.py). Each swap is checked by the
CLI's per-swap check (parity.checks.swaps.swap_and_check): no recompile under error_on_recompile, no
refusal, the output equal to a fresh eager load of that file alone on a copy of the same quantized
pipeline (bit for bit with the eager backend at model level), and PEFT's float64 LoRA forward on our
dequantization W_q against our reference merge of W_q + δ.

zimage's Linear widths are whole GGUF blocks (32), so every targeted weight is quantized by all three.
"""

from __future__ import annotations

import functools
import json
import os

import pytest

from parity.checks import hotswap as hs
from parity.checks.cases import FIRST_SWAP, HOTSWAP_TARGET_RANK, SWAPS
from parity.checks.dynamo import reset
from parity.checks.swaps import swap_and_check
from parity.cli import main
from parity.lora.synth import write_lora
from parity.quant.dequant import dequantize
from parity.zoo import FAMILIES, build_pipeline
from parity.quant.registry import get_quantizer
from tests.support.cli import assert_one_line_error
from tests.support.quantizers import needs_quantizers
from tests.support.families import needs

QUANTIZERS = ("torchao-int8wo", "quanto-int8", "gguf-q8_0")
SWAPPED = SWAPS[:3]  # same rank, rank up to the target, rank down below the first
pytestmark = [pytest.mark.compile, pytest.mark.xdist_group("quantized-hotswap"), needs_quantizers(), needs("zimage")]

# Every session is `make slow` (measured on 2 cores, build + quantize + compile + three checked swaps):
# zimage 18-24 s each (it compiles twice: its first call fills freqs_cis), flux ~10 s. The default run
# keeps the CLI's zimage gguf-q8_0 run below (one swap, ~14 s) and the negative control
# (tests/harness/test_quantized_hotswap_control.py: flux torchao-int8wo, ~6 s).
SLOW = {
    ("zimage", "gguf-q8_0"): "~22 s; the default run swaps on this base through the CLI below",
    ("zimage", "torchao-int8wo"): "~24 s; the default run's negative control swaps on torchao (flux)",
    ("zimage", "quanto-int8"): "~24 s; quanto's QLinear, the same check",
    ("flux", "torchao-int8wo"): "~13 s; the negative control swaps on this base in the default run",
    ("flux", "quanto-int8"): "~11 s; quanto's QLinear on flux, the same check",
}
# The tiny flux's attention widths are no whole number of GGUF blocks (32): write_gguf keeps those
# weights F32, so no targeted weight would be quantized.
NOT_QUANTIZED = {("flux", "gguf-q8_0")}


@functools.cache
def _components(family: str) -> dict:
    return FAMILIES[family].components(build_pipeline(family))


def write_swap_lora(family: str, spec, directory: str) -> str:
    fam = FAMILIES[family]
    return write_lora(_components(family), {fam.denoiser: fam.default_targets[fam.denoiser]},
                      os.path.join(directory, f"{family}-{spec.name}.safetensors"), seed=spec.seed, rank=spec.rank,
                      alpha=spec.alpha)


def session_params(chosen: str | None = None) -> list:
    """Every (family, quantizer) session and swap; with ``--quantization NAME`` (e.g. torchao-float8dq on a GPU:
    diffusers' lora-fast setting, an FP8 base with hotswap and compile) that quantizer's, in the run asked for."""
    out = []
    for family in ("zimage", "flux"):
        for quantization in (chosen,) if chosen else QUANTIZERS:
            if (family, quantization) in NOT_QUANTIZED:
                continue
            slow = SLOW.get((family, quantization)) and not chosen
            marks = [pytest.mark.slow] if slow else []  # the reason: SLOW
            for spec in SWAPPED:
                out.append(pytest.param((family, quantization), spec, marks=marks,
                                        id=f"{family}-{quantization}-{spec.name}"))
    return out


@pytest.fixture(scope="module")
def session(request, tmp_path_factory, compile_options, device):
    """One compiled session on a quantized denoiser; only one compiled model is alive at a time."""
    family, quantization = request.param
    reason = get_quantizer(quantization).unavailable(device)
    if reason is not None:  # e.g. --quantization torchao-float8dq on a CPU
        pytest.skip(reason)
    backend, mode = compile_options
    directory = str(tmp_path_factory.mktemp(f"qhotswap-{family}-{quantization}"))
    first = write_swap_lora(family, FIRST_SWAP, directory)
    live = hs.start(family, first, HOTSWAP_TARGET_RANK, backend=backend, mode=mode, device=device,
                    quantization=quantization)
    yield live, directory
    reset()


def quantized_targets(live: hs.HotswapSession) -> list[str]:
    """The denoiser's quantized weights in the modules the files target (PEFT's base_layer names)."""
    targets = set(live.family.default_targets[live.family.denoiser])
    names = [n.replace(".base_layer", "") for n, p in live.denoiser.named_parameters() if dequantize(p) is not None]
    return [n for n in names if n.removesuffix(".weight").rsplit(".", 1)[-1] in targets]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function.__name__ == "test_hotswap_into_a_compiled_quantized_denoiser_does_not_recompile_and_matches_a_fresh_load":
        chosen = metafunc.config.getoption("--quantization", default=None)
        metafunc.parametrize(("session", "spec"), session_params(chosen), indirect=["session"], scope="module")


def test_hotswap_into_a_compiled_quantized_denoiser_does_not_recompile_and_matches_a_fresh_load(
        session, spec, parity_record):
    live, directory = session
    assert quantized_targets(live), "no targeted weight is quantized: the case would test a float base"
    path = write_swap_lora(live.family.name, spec, directory)

    record = swap_and_check(live, path, hs.parameter_footprint(live))

    assert record.refused is None and not record.recompiled, "; ".join(record.failures)
    parity_record(
        "hotswap", f"float32 {live.quantization}", record.vs_fresh,
        record.vs_fresh / record.vs_fresh_budget if record.vs_fresh_budget else 0.0,
        f"{live.backend}; e_fwd {record.forward_error:.2g}; "
        f"LoRA forward on W_q vs our merge (float64) {record.errors['vs_reference']:.2g}",
        timing=f"swap {1000 * record.swap_seconds:.0f} ms vs compile {live.compile_seconds:.1f} s",
    )
    assert record.ok, "; ".join(record.failures)
    assert record.params_delta == 0


# ---------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def zimage_loras(tmp_path_factory) -> list[str]:
    directory = str(tmp_path_factory.mktemp("qhotswap-cli"))
    return [write_swap_lora("zimage", spec, directory) for spec in (FIRST_SWAP, SWAPPED[1])]


@pytest.mark.timeout(120)
def test_cli_hotswap_on_a_gguf_base_names_the_quantization_and_passes(zimage_loras, tmp_path, capsys):
    """rank 4 loaded and compiled, rank 8 swapped into it, on a Q8_0 GGUF of zimage's transformer."""
    out_json = tmp_path / "report.json"

    code = main(["hotswap", "--family", "zimage", "--quantization", "gguf-q8_0", "-q", "--json", str(out_json),
                 *[a for path in zimage_loras for a in ("--lora", path)]])

    out = capsys.readouterr().out
    assert code == 0, out
    header = out.splitlines()[0]
    assert header.startswith("lora-parity hotswap: family zimage") and header.endswith("quantization gguf-q8_0")
    data = json.loads(out_json.read_text())
    assert data["quantization"] == "gguf-q8_0" and data["ok"] is True
    assert [s["path"] for s in data["swaps"]] == zimage_loras[1:]
    for s in data["swaps"]:
        assert not s["recompiled"] and s["new_graphs"] == 0 and s["refused"] is None
        assert s["vs_fresh"] == 0.0 and s["params_delta"] == 0  # eager, model level: bit for bit
        assert s["errors"]["vs_reference"] <= s["budgets"]["vs_reference"]


@pytest.mark.parametrize(
    ("quantization", "needles"),
    [
        ("bnb-nf4", ["bnb-nf4 needs a CUDA device", "No GPU found"]),
        ("gguf", ["--quantization gguf", "gguf-q8_0"]),
        ("int3", ["--quantization", "invalid choice: 'int3'", "torchao-int8wo"]),
    ],
    ids=["bnb-on-cpu", "user-gguf", "unknown"],
)
def test_cli_hotswap_refuses_a_quantization_it_cannot_run_in_one_line(zimage_loras, capsys, quantization, needles,
                                                                        device):
    if quantization == "bnb-nf4" and device != "cpu":
        pytest.skip("bitsandbytes runs where there is a GPU")
    code = main(["hotswap", "--family", "zimage", "--quantization", quantization,
                 *[a for path in zimage_loras for a in ("--lora", path)]])
    assert_one_line_error(capsys, code, *needles)
