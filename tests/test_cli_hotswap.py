"""``lora-parity hotswap``, run in-process: swaps into the tiny sd15 UNet compiled with the eager backend.

Compiling is the expensive part (~7 s), so the passing run is made once and read by two tests, and
every other test compiles at most once.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from parity.cli import main
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family
from tests.support.cli import assert_one_line_error

FAMILY = get_family("sd15")


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """UNet-only files of ranks 4, 8, 2 (alphas differ, so the scaling is swapped too), and one that
    also targets the resnets' conv1, which the first file did not."""
    d = tmp_path_factory.mktemp("hotswap-loras")
    components = FAMILY.components(build_pipeline(FAMILY))
    targets = FAMILY.default_targets["unet"]

    def write(name: str, seed: int, rank: int, alpha: float, extra: tuple[str, ...] = (), layout: str = "diffusers",
              text: tuple[str, ...] = ()) -> Path:
        return Path(write_lora(components, {"unet": (*targets, *extra), "text_encoder": text},
                               d / f"{name}.safetensors", layout, seed=seed, rank=rank, alpha=alpha))

    return {
        "rank4": write("rank4", 1, 4, 8.0),
        "rank8": write("rank8", 2, 8, 4.0),
        "rank2": write("rank2", 3, 2, 1.0),
        "wider": write("wider", 4, 4, 8.0, extra=("conv1",)),
        # kohya files as trainers publish them: text-encoder keys too, alphas in `.alpha` keys.
        "kohya1": write("kohya1", 5, 4, 8.0, layout="kohya", text=("q_proj",)),
        "kohya2": write("kohya2", 6, 8, 4.0, layout="kohya", text=("q_proj",)),
    }


def hotswap(*args: str | Path) -> int:
    return main(["hotswap", "--family", "sd15", *map(str, args)])


@pytest.fixture(scope="module")
def passing_run(loras, tmp_path_factory):
    """One compiled session swapping 4 -> 8 -> 2: (exit code, stdout, stderr, JSON report)."""
    out_json = tmp_path_factory.mktemp("hotswap-json") / "report.json"
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):  # capsys is per test; this run is shared by two
        code = hotswap("--lora", loras["rank4"], "--lora", loras["rank8"], "--lora", loras["rank2"],
                       "--json", out_json)
    return code, out.getvalue(), err.getvalue(), json.loads(out_json.read_text())


# ---------------------------------------------------------------- passing run


# The two tests reading the passing run share one xdist worker, where it runs once (a compiled session,
# 6 s on 2 cores); apart, each worker made it.
PASSING_RUN = pytest.mark.xdist_group("cli-hotswap-passing-run")


@pytest.mark.compile
@PASSING_RUN
def test_hotswap_passes_for_mixed_ranks(passing_run, loras):
    code, out, err, _ = passing_run
    assert code == 0, out + err
    assert "target rank 8" in out and "compiled (eager)" in out
    for name in ("rank8", "rank2"):
        [row] = [line for line in out.splitlines() if line.lstrip().startswith(str(loras[name]))]
        cells = row.split()
        assert cells[2] == "no" and cells[-1] == "ok", row  # recompile column, result column
    assert "Failures" not in out and out.rstrip().endswith("PASS: no recompile, no refusal, every output within budget")
    # progress on stderr, report on stdout
    assert "[1/3] load rank4.safetensors, compile (eager), warm up" in err and "[3/3] swap rank2.safetensors" in err
    assert "PASS" not in err and "Traceback" not in err


@pytest.mark.compile
@PASSING_RUN
def test_hotswap_json_lists_every_swap(passing_run, loras):
    code, _, _, data = passing_run
    assert code == 0
    assert data["family"] == "sd15" and data["model_path"] is None and data["level"] == "model"
    assert data["backend"] == "eager" and data["mode"] is None and data["target_rank"] == 8
    assert {"torch", "diffusers", "peft"} <= set(data["versions"])
    assert data["first"] == str(loras["rank4"]) and data["compile_seconds"] > 0
    assert [s["path"] for s in data["swaps"]] == [str(loras["rank8"]), str(loras["rank2"])]
    for s in data["swaps"]:
        assert s["ok"] and s["failures"] == [] and s["refused"] is None
        assert not s["recompiled"] and s["new_graphs"] == 0 and s["reasons"] == []
        assert s["swap_seconds"] > 0 and s["call_seconds"] > 0
        # eager backend at model level: bit-identical to a fresh load prepared the same way
        assert s["vs_fresh"] == 0.0 and s["vs_fresh_budget"] == 0.0
        assert set(s["errors"]) == set(s["budgets"]) == {"vs_reference"}
        assert s["errors"]["vs_reference"] <= s["budgets"]["vs_reference"]
        assert s["params_delta"] == 0 and s["bytes_delta"] == 0
    assert data["skipped"] == [] and data["ok"] is True


@pytest.mark.compile
def test_hotswap_swaps_kohya_files_at_the_default_model_level(loras, capsys):
    """load_lora_adapter converts no layout: the denoiser part of our parse goes to it in the diffusers
    layout, alphas included (a lost alpha would fail the float64 reference check)."""
    code = hotswap("--lora", loras["kohya1"], "--lora", loras["kohya2"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "level model" in out and "Traceback" not in out + err
    [row] = [line for line in out.splitlines() if line.lstrip().startswith(str(loras["kohya2"]))]
    assert row.split()[2] == "no" and row.split()[-1] == "ok", row
    assert out.rstrip().endswith("PASS: no recompile, no refusal, every output within budget")


def test_hotswap_help_says_what_is_swapped(capsys):
    assert main(["hotswap", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "The first file is loaded before compiling" in out
    assert "diffusers refuses to hotswap text encoders" in out and "load_lora_adapter(prefix=...)" in out


# ---------------------------------------------------------------- parity failures: exit 1


@pytest.mark.compile
def test_hotswap_reports_a_refused_swap_as_failure(loras, capsys):
    code = hotswap("--lora", loras["rank4"], "--lora", loras["wider"], "--lora", loras["rank2"])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "Traceback" not in out + err
    [line] = [line for line in out.splitlines() if "unexpected keys" in line]
    refusal = "refused: RuntimeError: Hot swapping the adapter did not succeed"
    assert line.lstrip().startswith(f"{loras['wider']}: {refusal}")
    assert "conv1" in line and "more)" in line  # the key list is cut to a readable length
    # diffusers deletes the adapter after a failed hotswap, so the third file is reported, not swapped
    assert f"not swapped (diffusers deleted the adapter after the refusal): {loras['rank2']}" in out
    assert "FAIL" in out and "REFUSED" in out


@pytest.mark.compile
# "missing" is `make slow` (7 s): the same guard failure as "too-small", with no padding at all
@pytest.mark.parametrize("fault", ["too-small", pytest.param("missing", marks=pytest.mark.slow)])
def test_hotswap_reports_a_recompile_when_target_rank_is_too_small_or_missing(loras, capsys, monkeypatch, fault):
    """Negative control: the CLI computes target rank 8, but diffusers pads to 4 (too small) or not at all
    (missing). PEFT then grows the rank-4 tensors to 8 with torch.utils.swap_tensors on the swap and
    dynamo's guards fail: exit 1 with dynamo's reason, and the growth, in the report."""
    from diffusers.loaders.peft import PeftAdapterMixin

    enable = PeftAdapterMixin.enable_lora_hotswap

    def faulty(self, target_rank: int = 128, check_compiled: str = "error") -> None:
        if fault == "too-small":
            enable(self, target_rank=4, check_compiled=check_compiled)

    monkeypatch.setattr(PeftAdapterMixin, "enable_lora_hotswap", faulty)
    code = hotswap("--lora", loras["rank4"], "--lora", loras["rank8"])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "Traceback" not in out + err
    [line] = [line for line in out.splitlines() if ": recompiled: " in line]
    assert "guard failure" in line and "lora_A" in line
    assert f"{loras['rank8']}: parameters grew by" in out
    assert "FAIL: a hotswap parity check failed" in out


# ---------------------------------------------------------------- bad input: exit 2, one line


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--family", "sd14", "--lora", "{rank4}", "--lora", "{rank8}"], ["sd14", "sd15"]),
        (["--lora", "{rank4}"], ["at least two --lora"]),
        (["--lora", "{rank4}", "--lora", "{missing}"], ["absent.safetensors", "no such file"]),
        # A rank above the target is bad input, not a failure: the outcome (a recompile) is known in advance.
        (["--lora", "{rank4}", "--lora", "{rank8}", "--target-rank", "4"], ["--target-rank 4", "(8, in", "rank8"]),
        (["--lora", "{rank4}", "--lora", "{rank8}", "--compile-backend", "tvm"], ["tvm", "inductor"]),
        (["--lora", "{rank4}", "--lora", "{rank8}", "--compile-mode", "max-autotune"], ["inductor backend only"]),
        (["--lora", "{rank4}", "--lora", "{rank8}", "--level", "denoiser"], ["denoiser", "pipeline"]),
        (["--lora", "{rank4}", "--lora", "{rank8}", "--model-path", "{tmp}"], ["model_index.json missing"]),
        (["--lora", "{rank4}", "--lora", "{rank8}", "--expert", "low"], ["--expert low", "sd15", "no experts"]),
        (["--lora", "{rank4}", "--lora", "{rank8}", "--expert", "medium"], ["--expert", "medium", "high"]),
    ],
    ids=["unknown-family", "one-lora", "missing-file", "target-rank-too-small", "backend", "mode", "level",
         "model-path-not-a-pipeline", "expert-of-a-one-denoiser-family", "unknown-expert"],
)
def test_hotswap_exits_2_on_bad_input(loras, tmp_path, capsys, args, needles):
    paths = {name: str(path) for name, path in loras.items()}
    paths |= {"missing": str(tmp_path / "absent.safetensors"), "tmp": str(tmp_path)}
    argv = [a.format(**paths) for a in args]
    family = [] if "--family" in argv else ["--family", "sd15"]
    assert_one_line_error(capsys, main(["hotswap", *family, *argv]), *needles)


@pytest.mark.compile
# `make slow` (5-8 s): tests/harness/test_user_files_untouched.py runs the same swap by default (two
# files into the tiny sd15 saved as a folder and given by --model-path, -q), read-only, and asserts
# this test's PASS and folder name in the report too
@pytest.mark.slow
def test_hotswap_runs_on_a_model_folder_given_by_path(loras, tmp_path, capsys):
    from parity.zoo import build_pipeline

    build_pipeline("sd15").save_pretrained(tmp_path / "model")

    code = main(["hotswap", "--family", "sd15", "--model-path", str(tmp_path / "model"), "-q",
                 "--lora", str(loras["rank4"]), "--lora", str(loras["rank8"])])

    out = capsys.readouterr().out
    assert code == 0, out
    assert str(tmp_path / "model") in out and "PASS" in out


# ---------------------------------------------------------------- Wan 2.2: the low-noise expert


@pytest.mark.compile
def test_hotswap_swaps_into_wan_s_low_expert_with_expert_low(tmp_path, capsys):
    """--expert low: the files' transformer keys go into transformer_2 (the only model compiled), whose
    swapped step is bit-identical to a fresh load there and to our float64 merge within its budget."""
    wan = get_family("wan")
    components = wan.components(build_pipeline(wan))
    paths = [write_lora(components, {"transformer": wan.default_targets["transformer"]},
                        tmp_path / f"wan-r{rank}.safetensors", seed=seed, rank=rank, alpha=2.0 * rank)
             for seed, rank in ((1, 4), (2, 8))]
    out_json = tmp_path / "report.json"

    code = main(["hotswap", "--family", "wan", "--expert", "low", "--lora", str(paths[0]), "--lora", str(paths[1]),
                 "--json", str(out_json)])

    out = capsys.readouterr().out
    assert code == 0, out
    assert "level model, expert low (transformer_2)" in out and "PASS" in out
    data = json.loads(out_json.read_text())
    assert data["expert"] == "low" and data["components"] == ["transformer_2"] and data["target_rank"] == 8
    [swap] = data["swaps"]
    assert swap["ok"] and not swap["recompiled"] and swap["vs_fresh"] == 0.0 and swap["params_delta"] == 0
