"""The matrix's columns: version sets given on the command line or in a TOML file, and the default ones chosen by
a written rule from a committed snapshot of PyPI's release history (``releases.json``, refreshed on request)."""

from __future__ import annotations

import datetime
import json
import os
import re
import tomllib
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from parity.errors import ParityInputError
from parity.matrix.envs import our_requirements, running_torch
from parity.matrix.schema import VersionSet

# The libraries a set pins. torch is optional in a set (the running torch otherwise); the other three are
# required, so that an environment's cache key says every version that decides a cell.
REQUIRED = ("diffusers", "peft", "transformers")
PACKAGES = (*REQUIRED, "torch")
RELEASES_PATH = Path(__file__).with_name("releases.json")
PYPI_JSON = "https://pypi.org/pypi/{package}/json"

# Pairs that the "of its day" rule could choose but that cannot import together, as data: while the first
# package's version is in its range, the second must be in its range. Neither release declares these (peft's
# metadata asks for any transformers), so pip would install the pair and the worker would fail to import it.
INCOMPATIBLE: tuple[tuple[str, str, str, str, str], ...] = (
    # peft 0.17.1's peft_model.py does `from transformers import ... HybridCache` at module level, and
    # transformers 5.0.0 has no HybridCache: `import peft` beside it raises ImportError (tried, 2026-12-07).
    # peft 0.18.0 imports it only under transformers < 4.56.
    # Today's history never pairs them (transformers 5.0.0 is of 2026-01-26, after peft 0.18.0 of 2025-11-13),
    # but a refreshed history or a test's does.
    ("peft", "<0.18", "transformers", "<5", "peft < 0.18 imports transformers' HybridCache, which 5.0 removed"),
)


# ---------------------------------------------------------------- sets the user names

_NAME = re.compile(r"^\s*([^=,]+?)\s*=(?!=)\s*(.*)$")  # "old=diffusers==…": a name, then one '=' not '=='


def parse_set(text: str) -> VersionSet:
    """``[NAME=]diffusers==A,peft==B,transformers==C[,torch==D,…]`` or ``NAME=python:/path/to/python``."""
    name, body = None, text.strip()
    named = _NAME.match(body)
    if named:
        name, body = named.group(1), named.group(2)
    if body.startswith("python:"):
        python = body.removeprefix("python:").strip()
        if not python:
            raise ParityInputError(f"version set {text!r}: python: needs the interpreter's path")
        return VersionSet(name=name or f"python {python}", python=python, rule="an existing interpreter, as it is")
    pins: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        package, version = _exact_pin(part, f"version set {text!r}")
        if package in pins:
            raise ParityInputError(f"version set {text!r}: {package} is pinned twice")
        pins[package] = version
    return _pinned_set(name, pins, f"version set {text!r}", rule=f"given: {text.strip()}")


def read_sets_file(path: str | os.PathLike[str]) -> list[VersionSet]:
    """A TOML file of ``[[set]]`` tables, each with ``name`` and either ``pins`` (a table package -> exact
    version) or ``python`` (an interpreter's path); ``env`` (a table of strings) is optional."""
    where = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParityInputError(f"cannot read the version sets file: {exc.strerror or exc}", path=where) from None
    except tomllib.TOMLDecodeError as exc:
        raise ParityInputError(f"not TOML: {exc}", path=where) from None
    if set(data) - {"set"} or not isinstance(data.get("set"), list) or not data["set"]:
        raise ParityInputError("expected [[set]] tables and nothing else", path=where)
    sets = []
    for i, table in enumerate(data["set"]):
        key = f"set[{i}]"
        if not isinstance(table, dict):
            raise ParityInputError("expected a [[set]] table", where, key)
        unknown = set(table) - {"name", "pins", "python", "env", "rule"}
        if unknown:
            raise ParityInputError(f"unknown key {sorted(unknown)[0]!r} (name, pins, python, env, rule)", where, key)
        name = table.get("name")
        env = table.get("env", {})
        if not _strings({k: table[k] for k in ("name", "rule") if k in table}) or not _strings(env):
            raise ParityInputError("name and rule must be strings and env a table of strings", where, key)
        if ("pins" in table) == ("python" in table):
            raise ParityInputError("give either pins or python", where, key)
        if "python" in table:
            if not isinstance(table["python"], str) or not table["python"]:
                raise ParityInputError("python must be an interpreter's path", where, key)
            sets.append(VersionSet(name=name or f"python {table['python']}", python=table["python"], env=env,
                                   rule=table.get("rule", f"an existing interpreter, from {where}")))
            continue
        if not _strings(table["pins"]):
            raise ParityInputError("pins must be a table of package = \"version\"", where, key)
        pins: dict[str, str] = {}
        for package, version in table["pins"].items():
            package, version = _exact_pin(f"{package}=={version.removeprefix('==')}", f"{where} [key {key}]")
            pins[package] = version
        vs = _pinned_set(name, pins, f"{where} [key {key}]", rule=table.get("rule", f"from {where}"))
        sets.append(VersionSet(name=vs.name, pins=vs.pins, env=env, rule=vs.rule))
    names = [s.name for s in sets]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate is not None:
        raise ParityInputError(f"two sets are named {duplicate!r} (a name heads one column)", path=where)
    return sets


def _strings(table: Any) -> bool:
    return isinstance(table, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in table.items())


def _exact_pin(part: str, where: str) -> tuple[str, str]:
    # Only exact pins: a range would resolve differently as releases appear, under one cached environment.
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^=<>!~*\s,;]+)\s*", part)
    if not match:
        raise ParityInputError(f"{where}: {part.strip()!r} is not an exact pin (package==version)")
    try:
        Version(match.group(2))
    except InvalidVersion:
        raise ParityInputError(f"{where}: {match.group(2)!r} is not a version") from None
    return canonicalize_name(match.group(1)), match.group(2)


def _pinned_set(name: str | None, pins: dict[str, str], where: str, rule: str) -> VersionSet:
    missing = [p for p in REQUIRED if p not in pins]
    if missing:
        raise ParityInputError(f"{where}: pin {', '.join(missing)} too (each of {', '.join(REQUIRED)} is pinned)")
    ordered = {p: pins[p] for p in PACKAGES if p in pins} | {p: v for p, v in pins.items() if p not in PACKAGES}
    return VersionSet(name=name or f"diffusers {pins['diffusers']}", pins=ordered, rule=rule)


# ---------------------------------------------------------------- release history

Releases = dict[str, dict[str, str]]  # package -> final version -> upload day (YYYY-MM-DD)


def load_releases(path: str | os.PathLike[str] = RELEASES_PATH) -> Releases:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))["packages"]
    except (OSError, ValueError, KeyError) as exc:
        raise ParityInputError(f"no release history ({exc}); `lora-parity matrix --refresh-releases` fetches it",
                               path=str(path)) from None


def refresh_releases(path: str | os.PathLike[str] = RELEASES_PATH, packages: Iterable[str] = PACKAGES,
                     fetch: Callable[[str], dict[str, Any]] | None = None) -> Releases:
    """Fetch each package's final releases and their days from PyPI and rewrite the snapshot at ``path``."""
    fetch = fetch or _fetch_json
    history = {p: final_releases(fetch(PYPI_JSON.format(package=p))) for p in packages}
    snapshot = {
        "fetched": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": PYPI_JSON,
        "what": "final releases (no pre-, dev- or wholly yanked ones); the day is the earliest file upload-time",
        "packages": history,
    }
    target = Path(path)
    partial = target.with_suffix(".json.partial")
    partial.write_text(json.dumps(snapshot, indent=1) + "\n", encoding="utf-8")
    partial.replace(target)  # a reader never sees half a snapshot
    return history


def final_releases(project: Mapping[str, Any]) -> dict[str, str]:
    """version -> day from a PyPI JSON document, oldest first."""
    out = {}
    for version, files in project.get("releases", {}).items():
        try:
            parsed = Version(version)
        except InvalidVersion:
            continue
        # A yanked release is one pip will not choose for a range; one whose files are all yanked is gone.
        live = [f for f in files if not f.get("yanked")]
        if parsed.is_prerelease or parsed.is_devrelease or not live:
            continue
        out[version] = min(f["upload_time_iso_8601"] for f in files)[:10]
    return dict(sorted(out.items(), key=lambda item: Version(item[0])))


def _fetch_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return json.load(response)
    except (OSError, ValueError) as exc:
        raise ParityInputError(f"cannot fetch {url}: {exc}") from None


# ---------------------------------------------------------------- the default sets

def default_sets(n: int = 8, releases: Releases | None = None, torch: str | None = None) -> list[VersionSet]:
    """The last ``n`` diffusers minors (0.X, newest patch) with the peft and transformers release of their day,
    each within what lora-parity itself requires (pyproject) and clear of ``INCOMPATIBLE``."""
    releases = releases if releases is not None else load_releases()
    torch = torch or running_torch()
    floors = {r.name: r.specifier for r in our_requirements() if r.name in REQUIRED}
    # Minors below our own diffusers floor are left out (fewer than n sets then): lora-parity cannot import there.
    minors: dict[tuple[int, int], Version] = {}
    for version in releases["diffusers"]:
        parsed = Version(version)
        if parsed in floors.get("diffusers", SpecifierSet()):
            key = (parsed.major, parsed.minor)
            minors[key] = max(minors.get(key, parsed), parsed)
    sets = []
    for patch in sorted(minors.values(), reverse=True)[:n]:
        day = releases["diffusers"][str(patch)]
        pins = {"diffusers": str(patch)}
        notes = [f"diffusers {patch}: newest {patch.major}.{patch.minor} release ({day})"]
        for package in ("peft", "transformers"):
            version, why = _of_the_day(package, day, releases[package], pins, floors.get(package, SpecifierSet()))
            pins[package] = version
            notes.append(f"{package} {version} ({releases[package][version]}): newest released on or before that "
                         f"day{why}")
        pins["torch"] = torch
        sets.append(VersionSet(name=f"diffusers {patch}", pins=pins,
                               rule="; ".join(notes) + f"; torch {torch}: the torch running lora-parity"))
    return sets


def _of_the_day(package: str, day: str, history: Mapping[str, str], chosen: Mapping[str, str],
                floor: SpecifierSet) -> tuple[str, str]:
    """The newest ``package`` release uploaded on or before ``day`` that the chosen pins can import with."""
    why = ""
    for version in sorted(history, key=Version, reverse=True):
        if history[version] > day or Version(version) not in floor:
            continue
        clash = _clash(package, version, chosen)
        if clash is None:
            return version, why
        why = f" below {version} ({clash})"  # the newest of the day did not fit: say why an older one stands
    raise ParityInputError(f"no {package} release of {day} or before fits {dict(chosen)} "
                           f"(lora-parity needs {package}{floor})")


def _clash(package: str, version: str, chosen: Mapping[str, str]) -> str | None:
    """Why ``package==version`` cannot go with the chosen pins, read from ``INCOMPATIBLE`` both ways round."""
    candidate = Version(version)
    for first, first_range, second, second_range, why in INCOMPATIBLE:
        if package == second and first in chosen and Version(chosen[first]) in SpecifierSet(first_range) \
                and candidate not in SpecifierSet(second_range):
            return why
        if package == first and second in chosen and candidate in SpecifierSet(first_range) \
                and Version(chosen[second]) not in SpecifierSet(second_range):
            return why
    return None


def with_torch(sets: Iterable[VersionSet], torch_versions: Iterable[str]) -> list[VersionSet]:
    """Every set under every torch version, named "<set> · torch X"; python sets are kept once, unchanged."""
    versions = list(torch_versions)
    for version in versions:
        _exact_pin(f"torch=={version}", "torch version")
    out = []
    for vs in sets:
        if vs.python is not None:
            out.append(vs)
            continue
        base = vs.name.split(" · torch ")[0]
        rule = "; ".join(part for part in vs.rule.split("; ") if part and not part.startswith("torch "))
        out.extend(VersionSet(name=f"{base} · torch {v}", pins={**vs.pins, "torch": v}, env=vs.env,
                              rule=f"{rule}; torch {v}: asked for (--torch)".lstrip("; ")) for v in versions)
    return out
