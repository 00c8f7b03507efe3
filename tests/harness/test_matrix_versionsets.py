"""The matrix's version sets: the "of its day" rule on a small made-up release history, the spec and TOML
forms with their one-line errors, the committed release snapshot, and environments that cannot be built (an
interpreter that is not there, a pin PyPI does not have) reported as install-failed, never raised."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from parity.errors import ParityInputError
from parity.matrix import envs, versionsets
from parity.matrix.schema import VersionSet

# Made up, shaped like the real history: a minor below lora-parity's floor (0.34), two patches of one minor,
# a peft of the same day as its diffusers, and a transformers 5 out before a peft that can import it.
HISTORY = {
    "diffusers": {"0.34.0": "2025-06-24", "0.35.0": "2025-08-19", "0.35.2": "2025-10-15", "0.36.0": "2026-02-01",
                  "0.37.0": "2026-03-05", "0.37.1": "2026-03-25"},
    "peft": {"0.17.1": "2025-08-21", "0.18.0": "2026-03-05", "0.19.0": "2026-04-14"},
    "transformers": {"4.57.1": "2025-10-14", "4.57.6": "2026-01-16", "5.0.0": "2026-01-26", "5.3.0": "2026-03-04",
                     "5.5.4": "2026-04-13"},
}


def pins(vs: VersionSet) -> tuple[str, str, str, str]:
    return vs.pins["diffusers"], vs.pins["peft"], vs.pins["transformers"], vs.pins["torch"]


def test_default_sets_pair_each_minor_with_the_releases_of_its_day() -> None:
    sets = versionsets.default_sets(n=8, releases=HISTORY, torch="2.13.0")
    assert [pins(s) for s in sets] == [
        ("0.37.1", "0.18.0", "5.3.0", "2.13.0"),  # the newest patch of 0.37; peft of the same day counts
        # 0.36.0's day has transformers 5.0.0 but only peft 0.17.1, which cannot import it: the newest 4.x
        ("0.36.0", "0.17.1", "4.57.6", "2.13.0"),
        ("0.35.2", "0.17.1", "4.57.1", "2.13.0"),
    ]  # 0.34 is below lora-parity's diffusers>=0.35: not offered, though n asks for more
    assert [s.name for s in sets] == ["diffusers 0.37.1", "diffusers 0.36.0", "diffusers 0.35.2"]
    assert "HybridCache" in sets[1].rule and "HybridCache" not in sets[0].rule
    assert "newest 0.37" in sets[0].rule and "2026-03-25" in sets[0].rule
    assert [pins(s)[0] for s in versionsets.default_sets(n=2, releases=HISTORY, torch="2.13.0")] == \
        ["0.37.1", "0.36.0"]


def test_default_sets_pin_the_running_torch_without_its_local_label() -> None:
    torch = versionsets.default_sets(n=1, releases=HISTORY)[0].pins["torch"]
    assert torch == versionsets.running_torch() and "+" not in torch


def test_the_committed_snapshot_gives_eight_sets_within_our_floors() -> None:
    releases = versionsets.load_releases()
    assert {"diffusers", "peft", "transformers", "torch"} <= set(releases)
    assert "4.57.0" not in releases["transformers"]  # yanked
    assert not any(any(c.isalpha() for c in v) for v in releases["peft"])  # no pre-releases
    sets = versionsets.default_sets(releases=releases, torch="2.13.0")
    minors = [tuple(int(x) for x in vs.pins["diffusers"].split(".")[:2]) for vs in sets]
    assert len(set(minors)) == len(sets) == 8 and min(minors) >= (0, 35)
    for vs in sets:
        peft = tuple(int(x) for x in vs.pins["peft"].split(".")[:2])
        assert peft >= (0, 17) and (peft >= (0, 18) or vs.pins["transformers"].startswith("4.")), vs


def test_refresh_writes_final_releases_with_their_first_upload_day(tmp_path: Path) -> None:
    def fetch(url: str) -> dict:
        assert url == "https://pypi.org/pypi/peft/json"
        return {"releases": {
            "0.1.0": [{"upload_time_iso_8601": "2024-01-02T10:00:00Z"},
                      {"upload_time_iso_8601": "2024-01-01T23:00:00Z"}],
            "0.2.0rc1": [{"upload_time_iso_8601": "2024-02-01T00:00:00Z"}],
            "0.2.0": [{"upload_time_iso_8601": "2024-03-01T00:00:00Z", "yanked": True}],
            "0.10.0": [{"upload_time_iso_8601": "2024-04-01T00:00:00Z"}],
            "0.3.0": [],
        }}

    target = tmp_path / "releases.json"
    assert versionsets.refresh_releases(target, ["peft"], fetch=fetch) == \
        {"peft": {"0.1.0": "2024-01-01", "0.10.0": "2024-04-01"}}
    assert versionsets.load_releases(target) == {"peft": {"0.1.0": "2024-01-01", "0.10.0": "2024-04-01"}}


def test_with_torch_multiplies_pinned_sets_and_keeps_python_sets() -> None:
    base = versionsets.default_sets(n=2, releases=HISTORY, torch="2.13.0")
    mine = VersionSet(name="mine", python=sys.executable)
    out = versionsets.with_torch([*base, mine], ["2.12.1", "2.13.0"])
    assert [s.name for s in out] == ["diffusers 0.37.1 · torch 2.12.1", "diffusers 0.37.1 · torch 2.13.0",
                                     "diffusers 0.36.0 · torch 2.12.1", "diffusers 0.36.0 · torch 2.13.0", "mine"]
    assert out[0].pins["torch"] == "2.12.1" and out[0].pins["peft"] == "0.18.0"


@pytest.mark.parametrize(("text", "name", "expected"), [
    ("diffusers==0.37.1,peft==0.18.1,transformers==5.5.4", "diffusers 0.37.1",
     {"diffusers": "0.37.1", "peft": "0.18.1", "transformers": "5.5.4"}),
    ("old=diffusers==0.35.2, peft==0.17.1, transformers==4.57.6, torch==2.13.0", "old",
     {"diffusers": "0.35.2", "peft": "0.17.1", "transformers": "4.57.6", "torch": "2.13.0"}),
    ("transformers==5.5.4,Peft==0.18.1,diffusers==0.37.1,accelerate==1.10.0", "diffusers 0.37.1",
     {"diffusers": "0.37.1", "peft": "0.18.1", "transformers": "5.5.4", "accelerate": "1.10.0"}),
])
def test_parse_set_reads_exact_pins(text: str, name: str, expected: dict[str, str]) -> None:
    vs = versionsets.parse_set(text)
    assert (vs.name, vs.pins, vs.python) == (name, expected, None)
    assert list(vs.pins)[:3] == ["diffusers", "peft", "transformers"]


def test_parse_set_reads_an_existing_interpreter() -> None:
    vs = versionsets.parse_set("mine=python:/opt/venv/bin/python")
    assert (vs.name, vs.python, vs.pins) == ("mine", "/opt/venv/bin/python", {})


@pytest.mark.parametrize("text", [
    "diffusers>=0.37,peft==0.18.1,transformers==5.5.4",  # a range
    "diffusers==0.37.*,peft==0.18.1,transformers==5.5.4",  # a wildcard
    "diffusers==0.37.1,peft==0.18.1",  # transformers not pinned
    "diffusers==0.37.1,peft==0.18.1,transformers==5.5.4,peft==0.19.0",  # pinned twice
    "diffusers==banana,peft==0.18.1,transformers==5.5.4",  # not a version
    "diffusers 0.37.1",
    "mine=python:",
    "",
])
def test_parse_set_refuses_anything_but_exact_pins_in_one_line(text: str) -> None:
    with pytest.raises(ParityInputError) as caught:
        versionsets.parse_set(text)
    message = str(caught.value)
    assert repr(text) in message and "\n" not in message


def test_read_sets_file(tmp_path: Path) -> None:
    path = tmp_path / "sets.toml"
    path.write_text('[[set]]\nname = "old"\npins = { diffusers = "0.35.2", peft = "0.17.1", '
                    'transformers = "==4.57.6" }\n\n[[set]]\nname = "mine"\npython = "/usr/bin/python3"\n'
                    'env = { HF_HUB_OFFLINE = "1" }\n')
    old, mine = versionsets.read_sets_file(path)
    assert (old.name, old.pins) == ("old", {"diffusers": "0.35.2", "peft": "0.17.1", "transformers": "4.57.6"})
    assert (mine.name, mine.python, mine.env) == ("mine", "/usr/bin/python3", {"HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize("text", [
    "[[set]]\npins = { diffusers = \">=0.35\", peft = \"0.17.1\", transformers = \"4.57.6\" }\n",
    "[[set]]\nname = \"a\"\npython = \"/x\"\npins = { diffusers = \"0.35.2\" }\n",
    "[[set]]\nname = \"a\"\npython = \"/x\"\ncolour = \"red\"\n",
    "[[set]]\nname = \"a\"\npython = \"/x\"\n[[set]]\nname = \"a\"\npython = \"/y\"\n",
    "[set]\nname = \"a\"\n",
    "[[set]\n",
])
def test_read_sets_file_errors_name_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "sets.toml"
    path.write_text(text)
    with pytest.raises(ParityInputError) as caught:
        versionsets.read_sets_file(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_interpreter_is_install_failed_not_raised(tmp_path: Path) -> None:
    result = envs.ensure_env(VersionSet(name="gone", python=str(tmp_path / "no-python")), tmp_path)
    assert (result.status, result.python) == ("install-failed", None)
    assert "no-python" in result.detail and "no such interpreter" in result.detail
    assert not (tmp_path / "envs").exists()  # nothing is built for a python set


def test_an_existing_interpreter_is_used_as_it_is(tmp_path: Path) -> None:
    result = envs.ensure_env(VersionSet(name="this", python=sys.executable), tmp_path)
    assert (result.status, result.python, result.cached) == ("ok", sys.executable, False)


def test_the_environment_installs_our_dependencies_but_not_lora_parity_or_unpinned_libraries() -> None:
    vs = versionsets.parse_set("diffusers==0.37.1,peft==0.18.1,transformers==5.5.4,accelerate==1.10.0")
    requirements = envs.install_requirements(vs, "2.13.0")
    assert requirements[:5] == ["torch==2.13.0", "diffusers==0.37.1", "peft==0.18.1", "transformers==5.5.4",
                                "accelerate==1.10.0"]
    names = [r.split("<")[0].split(">")[0].split("=")[0] for r in requirements]
    assert "pytest" in names and "numba" in names and "lora-parity" not in names
    assert names.count("accelerate") == 1 and names.count("torch") == 1  # a set's pin replaces our range
    key = envs.env_key(vs, "2.13.0")
    assert key == envs.env_key(vs, "2.13.0") != envs.env_key(vs, "2.12.1")


def test_an_unfinished_build_is_removed_and_built_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vs = VersionSet(name="x", pins={"diffusers": "0.37.1", "torch": "2.13.0"})
    env = tmp_path / "envs" / envs.env_key(vs, "2.13.0")
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(sys.executable)  # it has an interpreter, but no ready.json
    (env / "leftover").write_text("")
    built: list[Path] = []
    monkeypatch.setattr(envs, "_build", lambda env, *_: built.append(env) or "ERROR: stopped here")
    lines: list[str] = []
    result = envs.ensure_env(vs, tmp_path, log=lines.append)
    assert built == [env] and not env.exists()  # removed before the (stubbed) build
    assert (result.status, result.detail, result.cached) == ("install-failed", "ERROR: stopped here", False)
    assert any("removing an unfinished build" in line for line in lines)


def test_a_failing_install_is_install_failed_with_pips_error_line(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Real pip against the configured index, which answers in about a second for a version that does not exist;
    # offline, pip fails on the same pin, and without its retries it does so at once.
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "15")
    vs = versionsets.parse_set("diffusers==0.0.999,peft==0.18.1,transformers==5.5.4")
    lines: list[str] = []
    result = envs.ensure_env(vs, tmp_path, log=lines.append)
    assert (result.status, result.python, result.cached) == ("install-failed", None, False)
    assert result.detail.startswith("ERROR: ") and "diffusers==0.0.999" in result.detail, result.detail
    assert "\n" not in result.detail and len(result.detail) < 400
    assert Path(result.log_path).is_file() and not (Path(result.log_path).parent / "ready.json").exists()
    assert lines[0].startswith("matrix: diffusers 0.0.999: building its environment (pip install torch==")
    assert lines[-1].startswith("matrix: diffusers 0.0.999: install failed")


def test_a_full_disk_is_refused_up_front_naming_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured 2026-12-07: with the disk full, pip failed part way ('No space left on device') in four sets and a
    worker crashed. Now a build without room for an environment is not started; the set is one row saying so."""
    monkeypatch.setattr(envs.shutil, "disk_usage", lambda path: shutil_usage(free=2**30))
    monkeypatch.setattr(envs, "_build", lambda *args: pytest.fail("a build was started without room for it"))
    vs = VersionSet(name="x", pins={"diffusers": "0.37.1", "torch": "2.13.0"})
    result = envs.ensure_env(vs, tmp_path, log=lambda line: None)
    assert result.status == "install-failed" and str(tmp_path / "envs") in result.detail
    assert "1.00 GiB is free" in result.detail, result.detail


def shutil_usage(free: int):
    import shutil

    return shutil._ntuple_diskusage(total=100 * 2**30, used=100 * 2**30 - free, free=free)
