"""What comparing one image found, and for a mismatch its artifacts: expected | actual | difference as
one PNG (for a video one such row per frame, frame 0 at the top), and an index (HTML + JSON) of every
current mismatch in the report folder."""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parity.golden.pixels import png_bytes, quantise
from parity.golden.store import _locked, atomic_write
from parity.tolerances import GoldenThresholds

DEFAULT_REPORT_DIR = os.path.join("reports", "golden")


AMPLIFY = "|diff|/max|diff|: grey within the max-abs budget, red over it"  # the third panel of a mismatch image


TILE = 8  # nearest-neighbour upscale of each 32x32 panel in the mismatch image


@dataclass
class GoldenResult:
    case: str
    ok: bool
    metrics: dict[str, float]
    thresholds: GoldenThresholds
    failures: list[str] = field(default_factory=list)
    artifact: str | None = None
    # a video: each frame's metrics (``metrics`` is then the worst frame's of each: SSIM, PSNR min, max-abs max)
    frames: list[dict[str, float]] | None = None

    def message(self) -> str:
        m, t = self.metrics, self.thresholds
        worst = "" if self.frames is None else f" (worst of {len(self.frames)} frames, each held to these)"
        lines = [
            f"{self.case}: SSIM {m['ssim']:.5f} (>= {t.ssim:.5f}), PSNR {m['psnr']:.2f} dB (>= {t.psnr:.2f}), "
            f"max-abs {m['max_abs']:.3g} = {m['max_abs'] * 255:.2f}/255 (<= {t.max_abs:.3g}){worst}",
            *self.failures,
        ]
        if self.artifact:
            rows = "" if self.frames is None else ", one row per frame, frame 0 at the top"
            lines.append(f"expected | actual | {AMPLIFY}{rows}: {self.artifact} "
                         f"(index: {Path(self.artifact).parent.parent / 'index.html'})")
        return "\n".join(lines)


GAP = 4  # white pixels between panels, and between a video's rows


def side_by_side(expected: np.ndarray, actual: np.ndarray, budget: float) -> np.ndarray:
    """expected | actual | difference, each upscaled TILE× (nearest), 4 px white gaps. The difference
    panel is grey |diff| / max|diff| (max over channels), and red (same brightness, at least 1/4) where
    |diff| exceeds ``budget``: rounding-level noise stays grey, what failed the check is red. A video
    (FxHxWx3) gives one such row per frame, frame 0 at the top, 4 px white between rows; max|diff| is
    the whole video's, so a frame that moved is bright beside frames that did not."""
    exp = np.clip(np.asarray(expected, np.float64), 0, 1)
    act = np.nan_to_num(np.clip(np.asarray(actual, np.float64), 0, 1), nan=1.0)
    diff = np.abs(exp - act).max(axis=-1)
    top = diff.max()
    amp = np.repeat((diff / top if top > 0 else diff)[..., None], 3, axis=-1)
    over = diff > budget
    amp[over] = 0.0
    amp[over, 0] = np.maximum(diff[over] / top, 0.25)  # red, brighter = larger
    if exp.ndim == 3:
        return _row(exp, act, amp)
    rows = [_row(e, a, d) for e, a, d in zip(exp, act, amp)]
    gap = np.full((GAP, rows[0].shape[1], 3), 255, dtype=np.uint8)
    return np.concatenate([part for row in rows for part in (gap, row)][1:], axis=0)


def _row(exp: np.ndarray, act: np.ndarray, amp: np.ndarray) -> np.ndarray:
    tiles = [quantise(np.kron(t, np.ones((TILE, TILE, 1)))) for t in (exp, act, amp)]
    gap = np.full((tiles[0].shape[0], GAP, 3), 255, dtype=np.uint8)
    return np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1)


def _index_html(entries: dict[str, dict[str, Any]]) -> str:
    rows = []
    for case, e in sorted(entries.items()):
        frames = f"<br>{e['frames']} frames: one row each, frame 0 at the top" if e.get("frames") else ""
        rows.append(
            "<tr><td>{case}{frames}</td><td><img src='{img}' alt='{case}'></td><td>{ssim:.5f}<br>&ge; {tssim:.5f}</td>"
            "<td>{psnr:.2f}<br>&ge; {tpsnr:.2f}</td><td>{mabs:.3g} ({m255:.2f}/255)<br>&le; {tmabs:.3g}</td>"
            "<td>{fail}</td></tr>".format(
                case=html.escape(case), frames=frames, img=html.escape(e["image"]), ssim=e["ssim"], tssim=e["ssim_min"],
                psnr=e["psnr"], tpsnr=e["psnr_min"], mabs=e["max_abs"], m255=e["max_abs"] * 255,
                tmabs=e["max_abs_max"], fail="<br>".join(html.escape(f) for f in e["failures"]),
            )
        )
    return (
        "<!doctype html><meta charset='utf-8'><title>golden mismatches</title>"
        "<style>body{font-family:sans-serif}td{padding:4px 8px;vertical-align:top}"
        "img{image-rendering:pixelated}</style>"
        f"<h1>Golden mismatches ({len(entries)})</h1>"
        f"<p>Each image: expected | actual | difference ({AMPLIFY}).</p>"
        "<table border=1 cellspacing=0><tr><th>case</th><th>expected | actual | difference</th><th>SSIM</th>"
        "<th>PSNR (dB)</th><th>max-abs</th><th>why</th></tr>" + "".join(rows) + "</table>\n"
    )


def record_mismatch(report_dir: Path, result: GoldenResult, expected: np.ndarray, actual: np.ndarray) -> Path:
    """Write artifacts/<case>.png and (re)write index.html listing every current mismatch."""
    report_dir = Path(report_dir)
    png = report_dir / "artifacts" / f"{result.case}.png"
    atomic_write(png, png_bytes(side_by_side(expected, actual, result.thresholds.max_abs)))
    with _locked_dir(report_dir):
        entries = _read_index(report_dir)
        entries[result.case] = {
            "image": f"artifacts/{result.case}.png",
            **{k: _finite_or(v) for k, v in result.metrics.items()},
            "ssim_min": result.thresholds.ssim, "psnr_min": result.thresholds.psnr,
            "max_abs_max": result.thresholds.max_abs, "failures": result.failures,
            **({"frames": len(result.frames)} if result.frames is not None else {}),
        }
        _write_index(report_dir, entries)
    return png


def clear_mismatch(report_dir: Path, case_id: str) -> None:
    """A case that passes no longer appears in the index (its stale artifact is removed)."""
    report_dir = Path(report_dir)
    if not (report_dir / "index.json").exists():
        return
    with _locked_dir(report_dir):
        entries = _read_index(report_dir)
        if entries.pop(case_id, None) is not None:
            with contextlib.suppress(FileNotFoundError):
                (report_dir / "artifacts" / f"{case_id}.png").unlink()
            _write_index(report_dir, entries)


def _finite_or(v: float) -> float:
    return v if math.isfinite(v) else (1e308 if v > 0 else -1e308)


@contextlib.contextmanager
def _locked_dir(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        yield


def _read_index(report_dir: Path) -> dict[str, dict[str, Any]]:
    path = report_dir / "index.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_index(report_dir: Path, entries: dict[str, dict[str, Any]]) -> None:
    atomic_write(report_dir / "index.json", json.dumps(entries, indent=1, sort_keys=True).encode())
    atomic_write(report_dir / "index.html", _index_html(entries).encode())
