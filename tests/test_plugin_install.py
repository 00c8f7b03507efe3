"""The pytest plugin as users get it: ``pip install lora-parity`` into a fresh environment, then pytest in a
project outside this repository, where no conftest of ours exists and only the package's ``pytest11``
entry point (pyproject.toml) can load the plugin.

The environment: a venv made without pip (no download), a .pth file reaching the dependencies this suite
runs with through a folder of links to them (every one but this package itself, whose editable install
would otherwise lend its own metadata), and this package built from a copy of its sources and installed
with ``pip install --no-deps --no-build-isolation --no-index`` (3 s). Measured on the 2-core CPU box: the
default tests 9-13 s together (the venv, the install, three runs of the unrelated suite); the slow ones
41 s (the fixture example: a fresh interpreter importing torch and diffusers, check() and hotswap() on the
tiny sd15) and 6 s (this repository's conftest beside the entry point).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIPPED_DEPS = ("lora_parity", "__editable__", "parity")  # this package: installed into the venv instead

pytestmark = pytest.mark.xdist_group("plugin-install")  # one venv per worker session, built once

TRIVIAL = '''
def test_adds():
    assert 1 + 1 == 2


def test_tmp_path(tmp_path):
    assert tmp_path.is_dir()
'''

EXAMPLE = '''
import parity


def test_the_installed_copy_runs():
    assert "site-packages" in parity.__file__, parity.__file__


def test_my_lora_still_fuses(lora_parity):
    report = lora_parity.check(family="sd15", loras=["styles/a.safetensors"], dtypes=["float32"], scale=1.0)
    assert report.ok, report.text   # report.text: what the CLI prints
    print(report.text)


def test_my_loras_hotswap(lora_parity):
    report = lora_parity.hotswap(family="sd15", loras=["styles/a.safetensors", "styles/b.safetensors"])
    assert report.ok, report.text
'''


class Venv:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.python = root / "bin" / "python"

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        """``python -m <args>``, or with ``-c`` first, ``python -c <code> <args>``."""
        # nothing of this session's pytest (xdist's worker variables, addopts) may reach the child
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH", "COV_"))}
        command = list(args) if args[0] == "-c" else ["-m", *args]
        return subprocess.run([str(self.python), *command], cwd=cwd, env=env, text=True, capture_output=True,
                              timeout=600)

    def install(self, tmp: Path) -> None:
        """This package as a user installs it: its sources copied (no build output lands in the repo),
        built into a wheel and installed with pip, offline."""
        src = tmp / "lora-parity-src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(REPO / name, src / name)
        shutil.copytree(REPO / "parity", src / "parity", ignore=shutil.ignore_patterns("__pycache__"))
        done = self.run("pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(src),
                        cwd=tmp)
        assert done.returncode == 0, done.stdout + done.stderr


def make_venv(root: Path) -> Venv:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    deps = root.parent / "deps"  # links to this environment's packages, this package's own left out
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    missing = [name for name in ("pip", "setuptools") if not (site / name).is_dir()]
    if missing:  # an environment made without them (the offline install needs both)
        pytest.skip(f"no {' or '.join(missing)} in {site} to install the package offline with")
    for entry in site.iterdir():
        if not entry.name.startswith(SKIPPED_DEPS) and entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    venv = Venv(root)
    out = subprocess.run([str(venv.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         check=True, capture_output=True, text=True)
    Path(out.stdout.strip(), "deps.pth").write_text(f"{deps}\n")
    return venv


def project(root: Path, tests: str) -> Path:
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")  # its own rootdir: nothing above it is read
    (root / "test_it.py").write_text(tests)
    return root


# One process, three runs of the user's suite as pytest's command line makes them: the tests, --help and
# --fixtures; between them the modules the first left imported (what loading the plugins cost the run).
SECTION = "\n=== lora-parity-install-test ===\n"
OBSERVE = f"""
import sys, pytest
flags = sys.argv[1:]
code = pytest.main(["-q", "-p", "no:cacheprovider", *flags])
print({SECTION!r} + " ".join(sorted(sys.modules)) + {SECTION!r}, flush=True)
pytest.main(["--help", *flags])
print({SECTION!r}, flush=True)
pytest.main(["--fixtures", "-p", "no:cacheprovider", *flags])
sys.exit(code)
"""


def observed(venv: Venv, suite: Path, *flags: str) -> dict[str, object]:
    """What a user sees of a run of their suite: its outcome, its option set, its fixtures, its imports."""
    run = venv.run("-c", OBSERVE, *flags, cwd=suite)
    tests, modules, helped, fixtures = run.stdout.split(SECTION)
    return {
        "rc": run.returncode, "outcome": re.sub(r" in [0-9.]+s", "", tests.strip().splitlines()[-1]),
        "options": set(re.findall(r"^\s+(--[a-z][\w-]*)", helped, re.M)),
        "fixtures": set(re.findall(r"^(\w+)(?: \[\w+ scope\])? -- ", fixtures, re.M)),
        "modules": set(modules.split()),
        "plugins": next((line for line in fixtures.splitlines() if line.startswith("plugins:")), ""),
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Venv, Path]:
    tmp = tmp_path_factory.mktemp("plugin-install")
    return make_venv(tmp / "venv"), tmp


@pytest.fixture(scope="module")
def installed(env) -> tuple[Venv, Path, dict, dict]:
    """The venv before and after ``pip install lora-parity``, and an unrelated suite run in each."""
    venv, tmp = env
    suite = project(tmp / "unrelated", TRIVIAL)
    before = observed(venv, suite)
    venv.install(tmp)
    return venv, tmp, before, observed(venv, suite)


def test_installing_the_plugin_leaves_an_unrelated_suite_unchanged(installed):
    venv, tmp, before, after = installed
    assert before["rc"] == after["rc"] == 0
    assert before["outcome"] == after["outcome"] == "2 passed"
    # added: the three prefixed options and the one fixture, nothing else; nothing taken away
    assert after["options"] - before["options"] == {"--lora-parity-device", "--lora-parity-golden-dir",
                                                    "--lora-parity-update-golden"}
    assert before["options"] <= after["options"]
    assert after["fixtures"] - before["fixtures"] == {"lora_parity"}
    assert before["fixtures"] <= after["fixtures"]
    # no torch, diffusers or checks loaded at start: only the plugin module and its two packages
    assert after["modules"] - before["modules"] == {"parity", "parity.pytest", "parity.pytest.userplugin"}


def test_the_plugin_comes_from_the_entry_point_and_p_no_turns_it_off(installed):
    venv, tmp, before, after = installed
    entry_points = next((tmp / "venv").glob("lib/python*/site-packages/lora_parity-*.dist-info/entry_points.txt"))
    assert "[pytest11]\nlora_parity = parity.pytest.userplugin" in entry_points.read_text()
    off = observed(venv, tmp / "unrelated", "-p", "no:lora_parity")
    assert {k: v for k, v in off.items() if k != "plugins"} == {k: v for k, v in before.items() if k != "plugins"}
    assert "lora-parity" in after["plugins"] and "lora-parity" not in before["plugins"] + off["plugins"]


@pytest.mark.slow
def test_the_fixture_example_passes_in_a_users_project(installed):
    """The README's contract in a user's repository: the tiny sd15 model, one LoRA file, check() passes;
    and hotswap() of a second file into it."""
    venv, tmp, _, _ = installed
    from parity.lora.synth import write_lora
    from parity.zoo import build_pipeline, get_family

    user = project(tmp / "user", EXAMPLE)
    components = get_family("sd15").components(build_pipeline("sd15"))
    (user / "styles").mkdir()
    write_lora(components, {"unet": ("to_q", "to_v"), "text_encoder": ("q_proj",)},
               str(user / "styles" / "a.safetensors"), seed=1, rank=4, alpha=2.0)
    write_lora(components, {"unet": ("to_q", "to_v")}, str(user / "styles" / "b.safetensors"), seed=2, rank=4)
    run = venv.run("pytest", "-q", "-s", "-p", "no:cacheprovider", cwd=user)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "3 passed" in run.stdout
    assert "lora-parity check: family sd15, model tiny" in run.stdout and "\nPASS" in run.stdout


@pytest.mark.slow
def test_this_repository_loads_the_plugin_once_beside_the_entry_point(installed):
    """Here the conftest loads the in-repo plugin, which must not register the installed one a second time
    (pytest would refuse the duplicate options): each option is listed once, the old names beside the new."""
    venv, _, _, _ = installed
    run = venv.run("pytest", "--help", "-p", "no:cacheprovider", cwd=REPO)
    assert run.returncode == 0, run.stderr[-4000:]
    options = re.findall(r"^\s+(--[a-z][\w-]*)", run.stdout, re.M)
    for option in ("--lora-parity-device", "--lora-parity-update-golden", "--device", "--update-golden"):
        assert options.count(option) == 1, option


class Plugins:
    """The part of pytest's plugin manager the in-repo plugin's registration uses."""

    def __init__(self, loaded: bool = False, blocked: bool = False) -> None:
        self.loaded, self.blocked, self.registered = loaded, blocked, []

    def has_plugin(self, name: str) -> bool:
        return self.loaded

    def is_blocked(self, name: str) -> bool:
        return self.blocked

    def register(self, plugin: object, name: str) -> None:
        self.registered.append((plugin, name))


def test_the_in_repo_plugin_registers_the_user_plugin_only_where_no_entry_point_did():
    from parity.pytest import plugin, userplugin

    for loaded, blocked, expected in ((False, False, [(userplugin, "lora_parity")]), (True, False, []),
                                      (False, True, [])):
        plugins = Plugins(loaded, blocked)
        plugin.pytest_addoption(None, plugins)
        assert plugins.registered == expected, (loaded, blocked)
