"""Where a run's reports go, so that nothing a previous run wrote is lost.

The rule, applied by every command and option that writes outputs:

- **default outputs** go to a fresh run folder ``<root>/<UTC yyyymmdd-HHMMSS>-<6 hex>/`` (e.g.
  ``reports/bench/20261123-034207-a1b2c3/``), and ``<root>/latest`` (a symlink; a ``LATEST`` text file
  naming the folder where symlinks fail) points at the newest;
- **an explicitly named folder** is refused (``ParityInputError``: one line naming it) when it already
  holds what this command writes there (a previous run's output), or when it is not empty and not a
  lora-parity run folder at all, unless the user passes ``--overwrite`` (``--overwrite-reports`` under
  pytest); a folder we marked that only holds other commands' outputs is fine, so one run can be
  filled step by step (``tools/bench.sh``: pytest's JSON, then the report beside it);
- **an explicitly named file** that exists is refused unless ``--overwrite``.

A folder is ours when it holds ``MARKER`` (run id, time, command). With ``--overwrite`` a marked
folder's previous outputs are removed first, so no stale file of the old run mixes with the new one;
an unmarked folder is written into but nothing in it is deleted: we only delete what we made.

Shell scripts use the same rule: ``lora-parity runs new|latest|claim`` (parity/cli/runs.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from parity.errors import ParityInputError

MARKER = "lora-parity-run.json"
LATEST_LINK = "latest"
LATEST_FILE = "LATEST"

# What each writer puts in its folder: a marked folder holding none of these is free for that writer.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "parity-report": ("summary.md", "summary.html", "summary.json"),
    "golden-report": ("index.html", "index.json", "artifacts"),
    "bench": ("run.json", "junit.xml"),
    "bench-report": ("report.md", "index.html", "plots"),
    "compare": ("compare.md",),
    "gate": ("gate.md", "gate.html", "golden"),
    "edit": ("images",),
    "matrix": ("matrix.json", "matrix.md", "matrix.html", "logs"),
}


def new_run_id(now: dt.datetime | None = None) -> str:
    """UTC time to the second (names sort by time) plus a random suffix (runs in the same second differ)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _command_line(command: Sequence[str] | str | None) -> str:
    if isinstance(command, str):
        return command
    return shlex.join(list(command) if command is not None else sys.argv)


def write_marker(folder: Path, command: Sequence[str] | str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Mark ``folder`` as a lora-parity run folder; returns what the marker says."""
    marker = {
        "lora_parity_run": run_id or new_run_id(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": _command_line(command),
    }
    (folder / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    return marker


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker, or None when the folder is not one of our run folders."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "lora_parity_run" in marker else None


def fresh_run_dir(root: str | os.PathLike, command: Sequence[str] | str | None = None, create: bool = True) -> Path:
    """A new run folder under ``root``, marked and pointed at by ``latest``.

    ``create=False`` only names it: for outputs written on demand (golden mismatches), so that a run
    with nothing to report leaves no empty folder; call ``adopt`` at the end of the run.
    """
    root = Path(root)
    while True:
        run_id = new_run_id()
        folder = root / run_id
        if not create:
            if not folder.exists():
                return folder
            continue
        root.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir()
        except FileExistsError:  # same second, same suffix: draw again
            continue
        write_marker(folder, command, run_id)
        point_latest(folder)
        return folder


def adopt(folder: str | os.PathLike, command: Sequence[str] | str | None = None) -> bool:
    """Finish a run folder named by ``fresh_run_dir(create=False)``: if the run wrote anything there,
    mark it and point ``latest`` at it. Returns whether it exists."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if read_marker(folder) is None:
        write_marker(folder, command, folder.name)
    point_latest(folder)
    return True


def point_latest(folder: Path) -> Path:
    """Point ``<parent>/latest`` at ``folder`` atomically (a reader sees the old or the new target)."""
    root = folder.parent
    link = root / LATEST_LINK
    tmp = root / f".{LATEST_LINK}-{folder.name}-{secrets.token_hex(2)}"
    try:
        os.symlink(folder.name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        # No symlinks here (or `latest` is someone's real folder): a text file naming the run instead.
        (root / LATEST_FILE).write_text(folder.name + "\n", encoding="utf-8")
        return root / LATEST_FILE
    with contextlib.suppress(FileNotFoundError):
        (root / LATEST_FILE).unlink()  # a stale fallback must not contradict the link
    return link


def latest(root: str | os.PathLike) -> Path | None:
    """The newest run folder under ``root`` per its ``latest`` pointer, or None."""
    root = Path(root)
    link = root / LATEST_LINK
    if link.is_symlink():
        target = root / os.readlink(link)
        return target if target.is_dir() else None
    try:
        name = (root / LATEST_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return root / name if name and (root / name).is_dir() else None


def claim_dir(
    folder: str | os.PathLike,
    produces: Sequence[str] | None,
    overwrite: bool,
    flag: str = "--overwrite",
    command: Sequence[str] | str | None = None,
) -> Path:
    """Make ``folder`` ready for this command's outputs, or refuse (see the module docstring).

    ``produces``: the names this command writes in the folder; None: the whole folder is its output.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ParityInputError("exists and is not a directory", path=str(folder))
    if not folder.exists():
        folder.mkdir(parents=True)
        write_marker(folder, command)
        return folder
    marker = read_marker(folder)
    entries = [p for p in folder.iterdir() if p.name != MARKER]
    if marker is None:
        if entries and not overwrite:
            raise ParityInputError(
                f"is not empty and is not a lora-parity run folder; name a new or empty folder, or use {flag} "
                "to write into it anyway", path=str(folder))
        write_marker(folder, command)
        return folder
    previous = entries if produces is None else [p for p in entries if p.name in set(produces)]
    if previous and not overwrite:
        names = ", ".join(sorted(p.name for p in previous)[:3]) + (", ..." if len(previous) > 3 else "")
        raise ParityInputError(
            f"holds the output of an earlier run ({marker['lora_parity_run']}: {names}); name a new folder, "
            f"or use {flag} to replace it", path=str(folder))
    for path in previous:  # overwrite: the old run's outputs go, so none mixes with the new ones
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    if previous:
        write_marker(folder, command)
    return folder


def output_folder(
    named: str | os.PathLike | None,
    writer: str,
    overwrite: bool,
    command: Sequence[str] | str | None = None,
    default_root: str | os.PathLike | None = None,
    flag: str = "--overwrite",
    create: bool = True,
) -> Path | None:
    """Where ``writer`` (a key of ``OUTPUTS``) puts its outputs: the folder the user named, claimed
    (``claim_dir``); else a new run folder under ``default_root`` (``fresh_run_dir``; with ``create=False``
    only named, for outputs written on demand), or None where the writer has no default."""
    if named is not None:
        return claim_dir(named, OUTPUTS[writer], overwrite, flag, command)
    if default_root is None:
        return None
    return fresh_run_dir(default_root, command, create=create)


def claim_file(path: str | os.PathLike, overwrite: bool, flag: str = "--overwrite") -> Path:
    """An output file the user named: refused when it exists (unless ``overwrite``) or is a folder."""
    path = Path(path)
    if path.is_dir():
        raise ParityInputError("is a directory, not a file to write", path=str(path))
    if not path.parent.is_dir():
        raise ParityInputError("its folder does not exist", path=str(path))
    if path.exists() and not overwrite:
        raise ParityInputError(f"already exists; name a new file, or use {flag} to replace it", path=str(path))
    return path

