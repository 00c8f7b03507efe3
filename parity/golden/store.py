"""One device class's stored baselines: PNGs and their manifest, written atomically, and an update
run's staging folder that commits as one transaction.

Layout on disk::

    golden/<device class>/<case id>.png      8-bit RGB, no metadata that varies; a video's frames side by
                                             side, left to right (its entry's "frames" says how many)
    golden/<device class>/manifest.json      one entry per case: how and with which versions it was made
    golden/<device class>/.update-<token>/   an update run's baselines until it commits (see GoldenStore)

The device class is ``cpu`` or ``cuda-sm<major><minor>``; a run compares only against its own class
unless told otherwise (``--golden-class``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parity.checks.cases import GoldenCase
from parity.golden.pixels import picture, png_bytes, quantise, read_png, unstrip

DEFAULT_GOLDEN_DIR = "golden"


class GoldenError(Exception):
    """A golden check that cannot even compare (missing baseline, changed case, refused update)."""


def how_to_create(case_id: str, family: str, root: str | os.PathLike, cls: str) -> str:
    return (
        f"no golden image for case {case_id!r} in {Path(root) / cls}. Create it with:\n"
        f"  pytest tests/test_golden.py --update-golden --golden-dir {root} --golden-class {cls} -k '{case_id}'\n"
        f"or, for the whole family:\n  lora-parity golden update --family {family} --golden-dir {root} --golden-class {cls}\n"
        "then look at the PNG before committing it."
    )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialise manifest read-merge-write between processes (xdist workers) where flock exists."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    # The lock file lives in the temp folder, keyed by the folder's path, so no stray file lands in the
    # committed golden/ tree.
    import hashlib

    key = hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:16]
    with open(os.path.join(tempfile.gettempdir(), f"lora-parity-golden-{key}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then os.replace: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes the file 0600; a baseline keeps the mode it had (new ones: rw-r--r--).
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


STAGING_PREFIX = ".update-"  # golden/<class>/.update-<pid>-<hex>/: one --update-golden run's writes


COMMIT_MARKER = "COMMIT"  # in a staging folder: its set is complete and its manifest.json is final


def new_update_token() -> str:
    """Names one update run's staging folder; the pid tells a live run's folder from an abandoned one."""
    return f"{os.getpid()}-{os.urandom(4).hex()}"


@dataclass
class GoldenStore:
    """One device class's baselines. With ``staging`` (an update run's token) writes go to a staging
    folder that readers of this store see first and ``commit_update`` moves into place; a run killed
    before the commit leaves the committed baselines exactly as they were."""

    root: Path  # e.g. golden/
    cls: str  # device class folder, e.g. cpu
    staging: str | None = None

    def __post_init__(self) -> None:
        self.recover()

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.cls

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    @property
    def staging_dir(self) -> Path | None:
        return None if self.staging is None else self.dir / f"{STAGING_PREFIX}{self.staging}"

    def _staged(self, name: str) -> Path | None:
        if self.staging_dir is None or not (self.staging_dir / name).exists():
            return None
        return self.staging_dir / name

    def png_path(self, case_id: str) -> Path:
        return self._staged(f"{case_id}.png") or self.dir / f"{case_id}.png"

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"device_class": self.cls, "entries": {}}
        return json.loads(self.manifest_path.read_text())

    def has(self, case_id: str) -> bool:
        """Whether the case has a baseline here: its PNG and its manifest entry."""
        return self.png_path(case_id).exists() and self.entry(case_id) is not None

    def entry(self, case_id: str) -> dict[str, Any] | None:
        staged = self._staged(f"{case_id}.json")
        if staged is not None:
            return json.loads(staged.read_text())
        return self.manifest().get("entries", {}).get(case_id)

    def load(self, case: GoldenCase) -> tuple[np.ndarray, dict[str, Any]]:
        png, entry = self.png_path(case.id), self.entry(case.id)
        if not png.exists() or entry is None:
            raise GoldenError(how_to_create(case.id, case.family, self.root, self.cls))
        pixels = read_png(png)
        return (unstrip(pixels, int(entry["frames"])) if entry.get("frames") else pixels), entry

    def write(self, case: GoldenCase, image: np.ndarray, entry: dict[str, Any]) -> Path:
        """Store one baseline: the PNG, then the manifest merged with this entry, both atomically
        (staged instead, under an update run). Other cases' PNGs and entries are left as they were."""
        refuse_non_finite(case.id, image)
        if np.ndim(image) == 4 and entry.get("frames") != len(image):  # read back by the entry's count
            raise GoldenError(f"{case.id}: a video of {len(image)} frames with an entry saying "
                              f"{entry.get('frames')!r} frames; refusing to store")
        if self.staging_dir is not None:
            atomic_write(self.staging_dir / f"{case.id}.png", png_bytes(quantise(picture(image))))
            atomic_write(self.staging_dir / f"{case.id}.json", json.dumps(entry, sort_keys=True).encode())
            return self.staging_dir / f"{case.id}.png"
        png = self.dir / f"{case.id}.png"
        atomic_write(png, png_bytes(quantise(picture(image))))
        with _locked(self.dir):
            self._write_manifest({case.id: entry})
        return png

    def _write_manifest(self, entries: dict[str, dict[str, Any]], to: Path | None = None) -> None:
        manifest = self.manifest()
        manifest["device_class"] = self.cls
        manifest["entries"] = dict(sorted({**manifest.get("entries", {}), **entries}.items()))
        atomic_write(to or self.manifest_path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())

    def commit_update(self) -> list[str]:
        """Move this run's staged baselines into place; returns the case ids committed.

        The staged manifest and the COMMIT marker are written first, so a commit cut short (killed
        between renames) is finished by the next store opened on this folder (``recover``)."""
        staging = self.staging_dir
        if staging is None or not staging.exists():
            return []
        with _locked(self.dir):
            staged = {p.stem: json.loads(p.read_text()) for p in sorted(staging.glob("*.json"))
                      if p.name != "manifest.json"}
            staged = {case_id: e for case_id, e in staged.items() if (staging / f"{case_id}.png").exists()}
            self._write_manifest(staged, to=staging / "manifest.json")
            atomic_write(staging / COMMIT_MARKER, json.dumps(sorted(staged)).encode())
            self._roll_forward(staging)
        return sorted(staged)

    def discard_update(self) -> None:
        """Drop this run's staged baselines (an interrupted run): the committed ones stay as they were."""
        if self.staging_dir is not None and self.staging_dir.exists():
            shutil.rmtree(self.staging_dir, ignore_errors=True)

    def _roll_forward(self, staging: Path) -> None:
        for png in sorted(staging.glob("*.png")):
            os.replace(png, self.dir / png.name)
        if (staging / "manifest.json").exists():
            os.replace(staging / "manifest.json", self.manifest_path)
        shutil.rmtree(staging, ignore_errors=True)

    def recover(self) -> None:
        """Finish commits that were cut short; remove staging folders of runs that died before theirs."""
        if not self.dir.is_dir():
            return
        leftovers = [p for p in self.dir.iterdir() if p.is_dir() and p.name.startswith(STAGING_PREFIX)]
        if not leftovers:
            return
        with _locked(self.dir):
            for staging in leftovers:
                if not staging.exists():
                    continue
                if (staging / COMMIT_MARKER).exists():
                    self._roll_forward(staging)
                elif not _owner_alive(staging.name) and staging.name != f"{STAGING_PREFIX}{self.staging}":
                    shutil.rmtree(staging, ignore_errors=True)


def _owner_alive(staging_name: str) -> bool:
    try:
        pid = int(staging_name.removeprefix(STAGING_PREFIX).split("-")[0])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def refuse_non_finite(case_id: str, image: np.ndarray) -> None:
    bad = ~np.isfinite(np.asarray(image, dtype=np.float64))
    if bad.any():
        raise GoldenError(f"{case_id}: refusing to store a baseline with {int(bad.sum())} non-finite pixel value(s)")
