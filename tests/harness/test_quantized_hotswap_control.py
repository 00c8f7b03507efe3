"""Negative control of the hotswap check on a quantized base (tests/test_quantized_hotswap.py): the
swapped output must differ from the fresh load it is compared with when the swapped-in adapter's
weights are wrong, so the check can fail there too."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file, save_file

from parity.checks import hotswap as hs
from parity.checks.cases import FIRST_SWAP, HOTSWAP_TARGET_RANK, SWAPS
from parity.checks.dynamo import reset
from parity.lora.synth import write_lora
from parity.zoo import FAMILIES, build_pipeline
from tests.support.quantizers import needs_quantizers

FAMILY = FAMILIES["flux"]  # the cheapest denoiser to compile; torchao quantizes every targeted Linear of it
QUANTIZATION = "torchao-int8wo"
pytestmark = [pytest.mark.compile, pytest.mark.xdist_group("quantized-hotswap"), needs_quantizers()]


def write(spec, directory) -> str:
    return write_lora(FAMILY.components(build_pipeline(FAMILY)),
                      {FAMILY.denoiser: FAMILY.default_targets[FAMILY.denoiser]},
                      directory / f"{spec.name}.safetensors", seed=spec.seed, rank=spec.rank, alpha=spec.alpha)


def perturbed(path: str, directory, factor: float = 1.01) -> str:
    """``path`` with one module's lora_B scaled by ``factor`` (1 %): a swap that kept a stale or wrong
    tensor in one layer."""
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    key = sorted(k for k in tensors if k.endswith("lora_B.weight"))[0]
    tensors[key] = tensors[key] * factor
    out = str(directory / "perturbed.safetensors")
    save_file(tensors, out, metadata=metadata)  # the header keeps the alphas (METADATA_KEY)
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory, compile_options, device):
    directory = tmp_path_factory.mktemp("qhotswap-control")
    backend, mode = compile_options
    session = hs.start(FAMILY, write(FIRST_SWAP, directory), HOTSWAP_TARGET_RANK, backend=backend, mode=mode,
                       device=device, quantization=QUANTIZATION)
    yield session, directory
    reset()


def test_a_swap_of_wrong_adapter_weights_on_a_quantized_base_fails_the_fresh_load_comparison(live):
    session, directory = live
    right = write(SWAPS[0], directory)
    wrong = perturbed(right, directory)

    result = hs.swap(session, wrong)
    assert result.error is None and not result.watch.recompiled, result.watch.summary()
    report = hs.check_swap_output(session, right, result.output)

    assert not report.ok
    assert report.vs_fresh > report.fresh_budget, report
    assert any("differs from a fresh eager load" in f for f in report.failures())
    # the failure is the weights': against the fresh load of what was swapped in, the same output passes
    assert hs.check_swap_output(session, wrong, result.output).ok
