"""One cached virtual environment per version set: its pins, torch, and lora-parity's other runtime dependencies,
never lora-parity itself (the worker imports this checkout through PYTHONPATH, so an environment does not depend
on where the repository lies). A build that finished wrote ``ready.json`` last; a folder without it is a broken
or failed build and is built again, so a failed install is retried on the next run rather than remembered."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from parity.matrix.schema import VersionSet

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

REPO_ROOT = Path(__file__).resolve().parents[2]
# What a version set decides; every other dependency comes as pyproject asks.
SET_PACKAGES = frozenset({"torch", "diffusers", "peft", "transformers"})
# Recorded in ready.json (the whole freeze is kept too): what a reader checks first.
KEY_PACKAGES = ("torch", "diffusers", "peft", "transformers", "accelerate", "safetensors", "numpy", "pytest")
# An environment measured 1.7 GiB here (torch 2.13 CPU is most of it); a build needs that and pip's temporary
# unpacking beside it, so one is refused up front below this.
ENV_DISK_BYTES = int(2.5 * 2**30)
INSTALL_TIMEOUT_S = 1800  # a CUDA torch from PyPI is several GB; the CPU wheel here comes from local disk
CACHE_ENV = "LORA_PARITY_CACHE"  # the same variable parity/zoo/published.py caches models under


@dataclass
class EnvResult:
    python: str | None  # the interpreter a worker runs; None when the build failed
    status: str  # "ok" | "install-failed" (schema.SET_STATUSES)
    detail: str = ""  # install-failed: the first line of why
    seconds: float = 0.0  # building it (0 when cached)
    log_path: str = ""  # <env>/install.log
    cached: bool = False
    key: str = ""  # the environment's folder name under <cache>/envs


def default_cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "lora-parity")
    return Path(root) / "matrix"


def our_requirements() -> list[Requirement]:
    """lora-parity's runtime dependencies: pyproject's in a checkout, the installed metadata otherwise."""
    pyproject = REPO_ROOT / "pyproject.toml"
    if pyproject.is_file():
        texts = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    else:
        texts = [r for r in metadata.requires("lora-parity") or [] if "extra ==" not in r]
    out = []
    for text in texts:
        requirement = Requirement(text)
        requirement.name = canonicalize_name(requirement.name)
        out.append(requirement)
    return out


def running_torch() -> str:
    """The running torch's release without its local label (2.13.0+cpu -> 2.13.0): pip then takes the build
    this machine's index offers (the CPU wheel on local disk here, PyPI's CUDA one elsewhere)."""
    return metadata.version("torch").split("+")[0]


def install_requirements(vs: VersionSet, torch: str) -> list[str]:
    """What one `pip install` gets: torch and the set's pins exactly, then our other dependencies as ranges."""
    pins = {"torch": torch, **vs.pins}
    ours = sorted(str(r) for r in our_requirements() if r.name not in SET_PACKAGES and r.name not in pins)
    return [f"{p}=={v}" for p, v in pins.items()] + ours


def env_key(vs: VersionSet, torch: str) -> str:
    """A short hash of what decides the environment's contents: the pins, the Python, our dependencies."""
    what = {"requirements": install_requirements(vs, torch), "python": platform.python_version(),
            "platform": f"{sys.platform}-{platform.machine()}"}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def ensure_env(vs: VersionSet, cache_dir: Path, *, rebuild: bool = False,
               log: Callable[[str], None] = print) -> EnvResult:
    """The set's interpreter, built (or found built) under ``cache_dir/envs``. Never raises for a failed build:
    the result says install-failed with pip's most telling line."""
    if vs.python is not None:
        return _existing_python(vs)
    torch = vs.pins.get("torch") or running_torch()
    key = env_key(vs, torch)
    env = Path(cache_dir) / "envs" / key
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    started = time.monotonic()
    try:
        with _locked(env.with_name(key + ".lock")):
            if (env / "ready.json").is_file() and python.exists() and not rebuild:
                return EnvResult(str(python), "ok", log_path=str(env / "install.log"), cached=True, key=key)
            if env.exists():
                log(f"matrix: {vs.name}: {'rebuilding' if rebuild else 'removing an unfinished build of'} "
                    f"its environment ({env})")
                shutil.rmtree(env)
            short = _disk_short(env.parent)
            if short:
                return EnvResult(None, "install-failed", short, 0.0, "", key=key)
            requirements = install_requirements(vs, torch)
            log(f"matrix: {vs.name}: building its environment (pip install {' '.join(requirements[:4])} …)")
            started = time.monotonic()
            detail = _build(env, python, requirements, {"torch": torch, **vs.pins})
    except OSError as exc:  # the cache folder itself: unwritable, full, or removed under us
        detail = f"{env}: {exc.strerror or exc}"
    seconds = time.monotonic() - started
    if detail:
        log(f"matrix: {vs.name}: install failed after {seconds:.0f} s: {detail}")
        return EnvResult(None, "install-failed", detail, seconds, str(env / "install.log"), key=key)
    log(f"matrix: {vs.name}: built in {seconds:.0f} s")
    return EnvResult(str(python), "ok", seconds=seconds, log_path=str(env / "install.log"), key=key)


def _disk_short(folder: Path) -> str:
    """Why an environment cannot be built in ``folder`` for want of disk, or "": refused up front, where pip
    would fail part way with 'No space left on device' and leave the next set's build no room either."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free >= ENV_DISK_BYTES:
        return ""
    return (f"{folder}: an environment takes about {ENV_DISK_BYTES / 2**30:.1f} GiB (torch is most of it) and "
            f"{free / 2**30:.2f} GiB is free; free some, or point --cache-dir elsewhere")


def _existing_python(vs: VersionSet) -> EnvResult:
    # Nothing is built for it: only that it is there and starts, so the failure is said here and not as a
    # crashed worker.
    assert vs.python is not None
    if not Path(vs.python).is_file():
        return EnvResult(None, "install-failed", f"{vs.python}: no such interpreter")
    try:
        ran = subprocess.run([vs.python, "-c", "import sys; print(sys.version)"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return EnvResult(None, "install-failed", f"{vs.python} does not run: {exc}")
    if ran.returncode != 0:
        last = next(iter((ran.stderr or ran.stdout).strip().splitlines()[-1:]), f"exit {ran.returncode}")
        return EnvResult(None, "install-failed", f"{vs.python} does not run: {last}")  # a traceback's last line
    return EnvResult(vs.python, "ok")


def _build(env: Path, python: Path, requirements: list[str], pins: dict[str, str]) -> str:
    """Build the environment; return "" when it is ready, else the one line that says why not."""
    env.mkdir(parents=True)
    log_path = env / "install.log"
    constraints = env / "constraints.txt"
    # The constraints file repeats the pins so that nothing a dependency asks for can move them.
    constraints.write_text("".join(f"{p}=={v}\n" for p, v in pins.items()), encoding="utf-8")
    # Our own pip (--python) installs into a venv made without one: no ensurepip step, and one pip's messages.
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    steps = [
        [sys.executable, "-m", "venv", "--without-pip", str(env)],
        [*pip, "install", "--no-input", "--progress-bar", "off", "-c", str(constraints), *requirements],
    ]
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the user's path is not the env's
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    with log_path.open("w", encoding="utf-8") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            try:
                done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, env=environ,
                                      timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return f"the install ran past {INSTALL_TIMEOUT_S} s (log: {log_path})"
            except OSError as exc:
                return f"{step[0]}: {exc}"
            if done.returncode != 0:
                out.flush()
                return _telling_line(log_path.read_text(encoding="utf-8", errors="replace")) \
                    or f"{' '.join(step[:4])} … exited {done.returncode}"
        frozen = subprocess.run([*pip, "freeze", "--all"], capture_output=True, text=True, env=environ)
        out.write(f"$ pip freeze\n{frozen.stdout}{frozen.stderr}")
    versions = _freeze(frozen.stdout)
    for package, version in pins.items():
        # A check of where pip installed as much as of what: a pin missing here went to another environment.
        if versions.get(package, "").split("+")[0] != version.split("+")[0]:
            return f"{package} is {versions.get(package, 'not installed')} in {env}, not the pinned {version}"
    ready = {"pins": pins, "requirements": requirements, "python": str(python),
             "python_version": platform.python_version(),
             "versions": {p: versions.get(p, "not installed") for p in KEY_PACKAGES},
             "freeze": sorted(f"{p}=={v}" for p, v in versions.items()),
             "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (env / "ready.json").write_text(json.dumps(ready, indent=1) + "\n", encoding="utf-8")  # last: it marks success
    return ""


def _freeze(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            out[canonicalize_name(name.strip())] = version.strip()
    return out


def _telling_line(log_text: str) -> str:
    """pip's first ``ERROR:`` line (a long version list shortened to its ends), else the log's last line. A
    "conflicting dependencies" error says little alone: a pin with no release (pip reports it so, because the
    constraints file repeats the pin) becomes "no distribution of X==V", a real conflict gets its first cause."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    first = next((line for line in lines if line.startswith("ERROR:")), lines[-1] if lines else "")
    if "conflicting dependencies" in first:
        missing = _after(lines, "no matching distributions available for your environment:")
        if missing:
            pinned = {line.rsplit(" ", 1)[-1].split("==")[0]: line.rsplit(" ", 1)[-1] for line in lines
                      if line.startswith("The user requested") and "==" in line}
            return f"ERROR: pip finds no distribution of {pinned.get(missing, missing)} for this environment"
        cause = next((line for line in lines if " depends on " in line), "")
        first = f"{first.rstrip('.')}: {cause}" if cause else first

    def shorten(match: re.Match[str]) -> str:
        versions = match.group(1).split(", ")
        shown = versions if len(versions) <= 6 else [versions[0], "…", *versions[-3:]]
        return f"(from versions: {', '.join(shown)})"

    return re.sub(r"\(from versions: ([^)]*)\)", shorten, first)[:400]


def _after(lines: list[str], heading: str) -> str:
    index = next((i for i, line in enumerate(lines) if line.endswith(heading)), None)
    return lines[index + 1] if index is not None and index + 1 < len(lines) else ""


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    # Two matrix runs sharing a cache must not build the same environment at once (one would remove the
    # other's half-built folder); the second waits and then finds it ready.
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        if fcntl is None:  # Windows: no lock; concurrent runs there need separate caches
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
