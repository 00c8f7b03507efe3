"""Proof that a run left a folder alone: every file's sha256 and mtime, and every folder's listing and
mtime, before and after; plus an in-process watch on write attempts, which catches what file
permissions cannot when the suite runs as root (root writes through a read-only chmod)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

# (kind, sha256 or None, mtime_ns); a folder's entry is its listing, so an added or removed file
# shows in its folder's entry as well as on its own.
Entry = tuple[str, str | None, int, tuple[str, ...]]


def snapshot(root: str | os.PathLike) -> dict[str, Entry]:
    """Every file and folder under ``root`` (itself included), keyed by path relative to it."""
    root = Path(root)
    entries: dict[str, Entry] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        if path.is_dir() and not path.is_symlink():
            entries[rel] = ("dir", None, st.st_mtime_ns, tuple(sorted(p.name for p in path.iterdir())))
        else:
            entries[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, ())
    return entries


def differences(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    """What changed, one line per path; empty when the folder was left alone."""
    lines = [f"added: {p}" for p in sorted(after.keys() - before.keys())]
    lines += [f"removed: {p}" for p in sorted(before.keys() - after.keys())]
    for p in sorted(before.keys() & after.keys()):
        (kind0, sha0, mtime0, list0), (kind1, sha1, mtime1, list1) = before[p], after[p]
        if (kind0, sha0, list0) != (kind1, sha1, list1):
            lines.append(f"content changed: {p}")
        elif mtime0 != mtime1:
            lines.append(f"mtime changed: {p}")
    return lines


_WRITE_EVENTS = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.chmod", "os.chown",
                 "os.utime", "os.symlink", "os.link", "os.truncate", "shutil.rmtree", "shutil.copyfile"}
_WATCHED: list[tuple[tuple[str, ...], list[str]]] = []  # (roots, attempts) of the active watches


def _audit(event: str, args: tuple) -> None:
    if not _WATCHED:
        return
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
        paths = [path] if writes else []
    elif event in _WRITE_EVENTS:
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
    else:
        return
    for path in paths:
        if isinstance(path, int):
            continue
        text = os.path.abspath(os.fsdecode(path))
        for roots, attempts in _WATCHED:
            if any(text == r or text.startswith(r + os.sep) for r in roots):
                attempts.append(f"{event} {text}")


_installed = False


@contextlib.contextmanager
def watch_writes(*roots: str | os.PathLike) -> Iterator[list[str]]:
    """Collects every attempt, in this process, to open for writing, create, rename, delete or chmod
    anything under ``roots`` (Python's audit events; native code writing on its own is left to the
    hashes)."""
    global _installed
    if not _installed:  # an audit hook cannot be removed: one, inert while nothing is watched
        sys.addaudithook(_audit)
        _installed = True
    watch = (tuple(os.path.abspath(r) for r in roots), [])
    _WATCHED.append(watch)
    try:
        yield watch[1]
    finally:
        _WATCHED.remove(watch)
