"""Golden images: seeded pipeline renders stored as 8-bit PNGs per device class, verified and updated.

Layout on disk::

    golden/<device class>/<case id>.png      8-bit RGB, no metadata that varies
    golden/<device class>/manifest.json      one entry per case: how and with which versions it was made
    golden/<device class>/.update-<token>/   an update run's baselines until it commits (see GoldenStore)

The device class is ``cpu`` or ``cuda-sm<major><minor>``; a run compares only against its own class
unless told otherwise (``--golden-class``). Thresholds live in ``parity/compare.py``
(``GOLDEN_TOLERANCES``); this module renders, stores, compares and writes the mismatch artifacts.
"""

from __future__ import annotations

import contextlib
import html
import inspect
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parity.compare import FLOAT_DTYPES, GoldenThresholds, golden_thresholds, output_budget
from parity.versions import library_versions

DEFAULT_GOLDEN_DIR = "golden"
DEFAULT_REPORT_DIR = os.path.join("reports", "golden")
LORA_RANK, LORA_ALPHA = 4, 2.0  # α/r = 0.5: a file whose alpha is dropped renders visibly differently
LORA_SEEDS = {"a": 1, "b": 2}
SSIM_WIN = 7  # odd, ≤ 32: fits the 32x32 zoo images (skimage's own default, passed explicitly)
AMPLIFY = "|diff|/max|diff|: grey within the max-abs budget, red over it"  # the third panel of a mismatch image
TILE = 8  # nearest-neighbour upscale of each 32x32 panel in the mismatch image

# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class GoldenCase:
    """One seeded render. ``op``: base | lora (unfused, scale via the attention kwargs) | fused |
    two (adapters a, b at weights 0.5, 1.0) | schedule (a at 1.0, set to 0.5 after step 0)."""

    family: str
    name: str
    op: str
    scale: float = 1.0
    layout: str = "diffusers"
    conv: bool = False  # LoCon: also target the family's Conv2d modules
    seed: int = 0
    dtype: str = "float32"
    steps: int | None = None  # None: the family's default (2)
    same_as: str | None = None  # another case's name this one must reproduce …
    relation: str | None = None  # … within OUTPUT_TOLERANCES[relation] ("same-arithmetic", "reordered")

    @property
    def id(self) -> str:
        return f"{self.family}-{self.name}"


def _family_cases(family: str, kohya: bool) -> list[GoldenCase]:
    cases = [
        GoldenCase(family, "base", "base"),
        GoldenCase(family, "lora-0.5", "lora", scale=0.5),
        GoldenCase(family, "lora-1.0", "lora", scale=1.0),
        GoldenCase(family, "fused-1.0", "fused", scale=1.0, same_as="lora-1.0", relation="reordered"),
        GoldenCase(family, "two-adapters", "two"),
        # 3 steps: with 2, the step after the switch is DDIM's last (t=1) and moves sd15 by < 1/255.
        GoldenCase(family, "schedule", "schedule", steps=3),
    ]
    if kohya:
        cases += [
            GoldenCase(family, "kohya-1.0", "lora", layout="kohya", same_as="lora-1.0", relation="same-arithmetic"),
            GoldenCase(family, "locon-kohya", "lora", layout="kohya", conv=True),
        ]
    return cases


# The one list of golden cases: tests/test_golden.py and `lora-parity golden` both run it.
CASES: tuple[GoldenCase, ...] = tuple(
    c
    for fam, kohya in (("sd15", True), ("sdxl", True), ("flux", False), ("qwenimage", False))
    for c in _family_cases(fam, kohya)
)
CASES_BY_ID = {c.id: c for c in CASES}


def cases_for(families: Sequence[str] | None = None) -> list[GoldenCase]:
    return [c for c in CASES if not families or c.family in families]


def device_class(device: str | torch.device = "cpu") -> str:
    """``cpu``, or ``cuda-sm<major><minor>`` from the device's compute capability."""
    dev = torch.device(device)
    if dev.type == "cpu":
        return "cpu"
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        return f"cuda-sm{major}{minor}"
    raise ValueError(f"no golden device class for {dev}")


def device_kind(cls: str) -> str:
    """The tolerance-table kind of a device class: ``cpu`` or ``cuda``."""
    return cls.split("-", 1)[0]


# ---------------------------------------------------------------- rendering


def _scale_kwarg(pipe: Any) -> str:
    """The __call__ argument whose ``scale`` key is the LoRA scale: UNet pipelines take
    cross_attention_kwargs, Flux joint_attention_kwargs, Qwen-Image attention_kwargs."""
    params = inspect.signature(type(pipe).__call__).parameters
    for name in ("cross_attention_kwargs", "joint_attention_kwargs", "attention_kwargs"):
        if name in params:
            return name
    raise ValueError(f"{type(pipe).__name__}.__call__ takes no attention kwargs for a LoRA scale")


def _lora_file(fam: Any, pipe: Any, adapter: str, case: GoldenCase, workdir: str) -> str:
    from parity.formats import save_lora
    from parity.synth import synth_lora

    targets = {c: tuple(s) for c, s in fam.default_targets.items()}
    if case.conv:
        for c, s in fam.conv_targets.items():
            targets[c] = targets.get(c, ()) + tuple(s)
    lora = synth_lora(fam.components(pipe), targets, seed=LORA_SEEDS[adapter], rank=LORA_RANK, alpha=LORA_ALPHA)
    path = os.path.join(workdir, f"{fam.name}-{adapter}-{case.layout}{'-conv' if case.conv else ''}.safetensors")
    return save_lora(lora, path, case.layout)


def render(case: GoldenCase, dtype: torch.dtype | None = None, device: str = "cpu") -> np.ndarray:
    """The case's image, float32 HxWx3 in [0, 1] as the pipeline returns it (``output_type="np"``)."""
    from parity.fuse import fuse_all_or_nothing
    from parity.zoo import build_pipeline, get_family

    fam = get_family(case.family)
    dtype = dtype or FLOAT_DTYPES[case.dtype]
    pipe = build_pipeline(fam, dtype=dtype, device=device)
    args = fam.call_args(pipe, case.seed)
    if case.steps is not None:
        args["num_inference_steps"] = case.steps
    with tempfile.TemporaryDirectory(prefix="golden-lora-") as workdir:
        if case.op == "base":
            pass
        elif case.op in ("lora", "fused", "schedule"):
            pipe.load_lora_weights(_lora_file(fam, pipe, "a", case, workdir), adapter_name="a")
            if case.op == "lora":
                args[_scale_kwarg(pipe)] = {"scale": case.scale}
            elif case.op == "fused":
                fuse_all_or_nothing(pipe, fam.components(pipe), case.scale)
            else:
                pipe.set_adapters(["a"], adapter_weights=[1.0])

                def after_step(p: Any, step: int, timestep: Any, kwargs: dict) -> dict:
                    # diffusers calls this after scheduler.step of `step`: step 1 onwards runs at 0.5.
                    if step == 0:
                        p.set_adapters(["a"], adapter_weights=[0.5])
                    return {}

                args["callback_on_step_end"] = after_step
        elif case.op == "two":
            for name in ("a", "b"):
                pipe.load_lora_weights(_lora_file(fam, pipe, name, case, workdir), adapter_name=name)
            pipe.set_adapters(["a", "b"], adapter_weights=[0.5, 1.0])
        else:
            raise ValueError(f"unknown golden op {case.op!r}")
        with torch.no_grad(), _noise_drawn_in(pipe, case.dtype):
            images = pipe(**args).images
    image = np.asarray(images[0], dtype=np.float64 if dtype == torch.float64 else np.float32)
    return image


@contextlib.contextmanager
def _noise_drawn_in(pipe: Any, dtype_name: str) -> Iterator[None]:
    """Draw the initial noise in the case's dtype whatever the pipeline's dtype. torch.randn with a
    float64 dtype consumes the generator differently (other numbers, not a wider copy), so a float64
    twin of a float32 render would start from different latents; pipelines import diffusers'
    randn_tensor by name, so it is wrapped in the pipeline's own module for the duration of the call."""
    import sys

    module = sys.modules[type(pipe).__module__]
    original = getattr(module, "randn_tensor", None)
    draw_dtype = FLOAT_DTYPES[dtype_name]
    if original is None:
        yield
        return

    def randn_tensor(shape: Any, generator: Any = None, device: Any = None, dtype: Any = None, **kw: Any) -> Any:
        noise = original(shape, generator=generator, device=device, dtype=draw_dtype, **kw)
        return noise.to(dtype) if dtype is not None else noise

    module.randn_tensor = randn_tensor
    try:
        yield
    finally:
        module.randn_tensor = original


def case_metadata(case: GoldenCase) -> dict[str, Any]:
    """What the manifest records about how the image is made (compared before pixels)."""
    from parity.zoo import get_family

    call = get_family(case.family).pipeline_call_args(case.seed)
    prompt = call.get("prompt")
    if prompt is None:
        prompt = f"<prompt_embeds from seed {case.seed}>"
    return {
        "case": case.id,
        "family": case.family,
        "op": case.op,
        "scale": case.scale,
        "layout": case.layout,
        "conv": case.conv,
        "seed": case.seed,
        "prompt": prompt,
        "steps": case.steps or call["num_inference_steps"],
        "size": [call["height"], call["width"]],
        "dtype": case.dtype,
        "lora": {"rank": LORA_RANK, "alpha": LORA_ALPHA, "seeds": LORA_SEEDS},
    }


# ---------------------------------------------------------------- pixels and metrics


def quantise(image: np.ndarray) -> np.ndarray:
    """float [0,1] → uint8 as diffusers' numpy_to_pil does: round(x·255)."""
    return np.clip(np.round(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def to_float(image_u8: np.ndarray) -> np.ndarray:
    return image_u8.astype(np.float64) / 255.0


def png_bytes(image_u8: np.ndarray) -> bytes:
    """PNG of an 8-bit RGB array; PIL writes no time or text chunks unless asked, so equal arrays give
    equal bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image_u8), mode="RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def read_png(path: str | os.PathLike) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def metrics(expected: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """SSIM, PSNR and max-abs of two float images in [0, 1] (scikit-image, data_range 1)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    exp = np.asarray(expected, dtype=np.float64)
    act = np.asarray(actual, dtype=np.float64)
    if exp.shape != act.shape:
        return {"ssim": -math.inf, "psnr": -math.inf, "max_abs": math.inf}
    if not np.isfinite(act).all():
        return {"ssim": -math.inf, "psnr": -math.inf, "max_abs": math.inf}
    max_abs = float(np.abs(exp - act).max())
    psnr = math.inf if max_abs == 0 else float(peak_signal_noise_ratio(exp, act, data_range=1.0))
    ssim = float(structural_similarity(exp, act, data_range=1.0, channel_axis=-1, win_size=SSIM_WIN))
    return {"ssim": ssim, "psnr": psnr, "max_abs": max_abs}


def forward_error(case: GoldenCase, image: np.ndarray, device: str = "cpu") -> float:
    """e_fwd: max |image − the same render in float64| (the dtype's rounding on this very computation)."""
    ref = render(case, torch.float64, device)
    return float(np.abs(np.asarray(image, dtype=np.float64) - ref).max())


# ---------------------------------------------------------------- store


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

    def entry(self, case_id: str) -> dict[str, Any] | None:
        staged = self._staged(f"{case_id}.json")
        if staged is not None:
            return json.loads(staged.read_text())
        return self.manifest().get("entries", {}).get(case_id)

    def load(self, case: GoldenCase) -> tuple[np.ndarray, dict[str, Any]]:
        png, entry = self.png_path(case.id), self.entry(case.id)
        if not png.exists() or entry is None:
            raise GoldenError(how_to_create(case.id, case.family, self.root, self.cls))
        return read_png(png), entry

    def write(self, case: GoldenCase, image: np.ndarray, entry: dict[str, Any]) -> Path:
        """Store one baseline: the PNG, then the manifest merged with this entry, both atomically
        (staged instead, under an update run). Other cases' PNGs and entries are left as they were."""
        refuse_non_finite(case.id, image)
        if self.staging_dir is not None:
            atomic_write(self.staging_dir / f"{case.id}.png", png_bytes(quantise(image)))
            atomic_write(self.staging_dir / f"{case.id}.json", json.dumps(entry, sort_keys=True).encode())
            return self.staging_dir / f"{case.id}.png"
        png = self.dir / f"{case.id}.png"
        atomic_write(png, png_bytes(quantise(image)))
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


def update_case(
    store: GoldenStore,
    case: GoldenCase,
    device: str = "cpu",
    renderer: Callable[[GoldenCase], np.ndarray] | None = None,
    error_fn: Callable[[GoldenCase, np.ndarray], float] | None = None,
) -> dict[str, Any]:
    """Render twice, refuse non-finite or differing runs (as peft's regression tests do), measure e_fwd
    against float64, store. Returns the manifest entry written."""
    renderer = renderer or (lambda c: render(c, device=device))
    first = renderer(case)
    refuse_non_finite(case.id, first)
    second = renderer(case)
    refuse_non_finite(case.id, second)
    if not np.array_equal(first, second):
        diff = float(np.abs(np.asarray(first, np.float64) - np.asarray(second, np.float64)).max())
        raise GoldenError(f"{case.id}: two consecutive runs differ (max |diff| {diff:.3g}); refusing to store "
                          "a baseline that is not reproducible")
    e_fwd = (error_fn or (lambda c, im: forward_error(c, im, device)))(case, first)
    if not math.isfinite(e_fwd):
        raise GoldenError(f"{case.id}: the float64 reference render is not finite; refusing to store")
    entry = {**case_metadata(case), "device_class": store.cls, "float64_error": e_fwd, "versions": library_versions()}
    store.write(case, first, entry)
    return entry


# ---------------------------------------------------------------- verify + artifacts


@dataclass
class GoldenResult:
    case: str
    ok: bool
    metrics: dict[str, float]
    thresholds: GoldenThresholds
    failures: list[str] = field(default_factory=list)
    artifact: str | None = None

    def message(self) -> str:
        m, t = self.metrics, self.thresholds
        lines = [
            f"{self.case}: SSIM {m['ssim']:.5f} (>= {t.ssim:.5f}), PSNR {m['psnr']:.2f} dB (>= {t.psnr:.2f}), "
            f"max-abs {m['max_abs']:.3g} = {m['max_abs'] * 255:.2f}/255 (<= {t.max_abs:.3g})",
            *self.failures,
        ]
        if self.artifact:
            lines.append(f"expected | actual | {AMPLIFY}: {self.artifact} (index: {Path(self.artifact).parent.parent / 'index.html'})")
        return "\n".join(lines)


def side_by_side(expected: np.ndarray, actual: np.ndarray, budget: float) -> np.ndarray:
    """expected | actual | difference, each upscaled TILE× (nearest), 4 px white gaps. The difference
    panel is grey |diff| / max|diff| (max over channels), and red (same brightness, at least 1/4) where
    |diff| exceeds ``budget``: rounding-level noise stays grey, what failed the check is red."""
    exp = np.clip(np.asarray(expected, np.float64), 0, 1)
    act = np.nan_to_num(np.clip(np.asarray(actual, np.float64), 0, 1), nan=1.0)
    diff = np.abs(exp - act).max(axis=-1)
    top = diff.max()
    amp = np.repeat((diff / top if top > 0 else diff)[..., None], 3, axis=-1)
    over = diff > budget
    amp[over] = 0.0
    amp[over, 0] = np.maximum(diff[over] / top, 0.25)  # red, brighter = larger
    tiles = [quantise(np.kron(t, np.ones((TILE, TILE, 1)))) for t in (exp, act, amp)]
    gap = np.full((tiles[0].shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1)


def _index_html(entries: dict[str, dict[str, Any]]) -> str:
    rows = []
    for case, e in sorted(entries.items()):
        rows.append(
            "<tr><td>{case}</td><td><img src='{img}' alt='{case}'></td><td>{ssim:.5f}<br>&ge; {tssim:.5f}</td>"
            "<td>{psnr:.2f}<br>&ge; {tpsnr:.2f}</td><td>{mabs:.3g} ({m255:.2f}/255)<br>&le; {tmabs:.3g}</td>"
            "<td>{fail}</td></tr>".format(
                case=html.escape(case), img=html.escape(e["image"]), ssim=e["ssim"], tssim=e["ssim_min"],
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


def compare_image(
    case_id: str, expected_u8: np.ndarray, actual: np.ndarray, thresholds: GoldenThresholds,
    report_dir: Path | None, extra_failures: Sequence[str] = (),
) -> GoldenResult:
    """Compare a float render with a stored 8-bit baseline; on mismatch write the artifacts."""
    expected = to_float(expected_u8)
    m = metrics(expected, actual)
    failures = list(extra_failures)
    if np.asarray(actual).shape != expected.shape:
        failures.append(f"shape {np.asarray(actual).shape} != baseline {expected.shape}")
    elif not np.isfinite(np.asarray(actual, np.float64)).all():
        failures.append("the render has non-finite pixel values")
    else:
        if m["max_abs"] > thresholds.max_abs:
            failures.append(f"max-abs {m['max_abs']:.3g} > {thresholds.max_abs:.3g}")
        if m["psnr"] < thresholds.psnr:
            failures.append(f"PSNR {m['psnr']:.2f} < {thresholds.psnr:.2f} dB")
        if m["ssim"] < thresholds.ssim:
            failures.append(f"SSIM {m['ssim']:.5f} < {thresholds.ssim:.5f}")
    result = GoldenResult(case_id, not failures, m, thresholds, failures)
    if report_dir is not None:
        if result.ok:
            clear_mismatch(Path(report_dir), case_id)
        elif np.asarray(actual).shape == expected.shape:
            result.artifact = str(record_mismatch(Path(report_dir), result, expected, actual))
    return result


def verify_image(store: GoldenStore, case: GoldenCase, image: np.ndarray, report_dir: Path | None) -> GoldenResult:
    """Compare ``image`` with the stored baseline of ``case`` (GoldenError when there is none)."""
    expected, entry = store.load(case)
    changed = [
        f"case definition changed since the baseline: {k} {entry.get(k)!r} -> {v!r} (regenerate it)"
        for k, v in case_metadata(case).items()
        if k != "lora" and entry.get(k) != v
    ]
    thresholds = golden_thresholds(device_kind(store.cls), case.dtype, float(entry["float64_error"]))
    return compare_image(case.id, expected, image, thresholds, report_dir, changed)


@dataclass
class RelationResult:
    ok: bool
    max_abs: float
    budget: float
    detail: str


def check_relation(case: GoldenCase, image: np.ndarray, other: np.ndarray, store: GoldenStore) -> RelationResult:
    """``case`` must reproduce ``case.same_as``'s render (fresh renders, no quantisation) within
    OUTPUT_TOLERANCES[case.relation]; e_fwd is the other case's stored float64 error."""
    other_id = f"{case.family}-{case.same_as}"
    diff = float(np.abs(np.asarray(image, np.float64) - np.asarray(other, np.float64)).max())
    if not math.isfinite(diff):
        return RelationResult(False, math.inf, 0.0, f"{case.id} vs {other_id}: non-finite pixels")
    if case.relation == "same-arithmetic":
        budget = 0.0
    else:
        entry = store.entry(other_id)
        if entry is None:
            raise GoldenError(how_to_create(other_id, case.family, store.root, store.cls))
        budget = output_budget(float(entry["float64_error"]), torch.from_numpy(np.asarray(other, np.float64)),
                               FLOAT_DTYPES[case.dtype], case.relation)
    ok = diff <= budget
    return RelationResult(ok, diff, budget,
                          f"{case.id} vs {other_id} ({case.relation}): max |diff| {diff:.3g} <= {budget:.3g}"
                          + ("" if ok else "  FAILED"))


def variant(case: GoldenCase, **changes: Any) -> GoldenCase:
    """The same case with fields changed (negative controls: another seed, scale 1.05)."""
    return replace(case, **changes)



# ---------------------------------------------------------------- one case, end to end

_RENDERS: dict[tuple[GoldenCase, str], np.ndarray] = {}


def render_cached(case: GoldenCase, device: str = "cpu") -> np.ndarray:
    """render(), once per case and device in this process (relations reuse other cases' renders)."""
    key = (case, device)
    if key not in _RENDERS:
        image = render(case, device=device)
        image.setflags(write=False)
        _RENDERS[key] = image
    return _RENDERS[key]


@dataclass
class CaseOutcome:
    case: str
    ok: bool
    lines: list[str]
    result: GoldenResult | None = None
    updated: bool = False


def run_case(store: GoldenStore, case: GoldenCase, report_dir: Path | None, update: bool = False,
             device: str = "cpu") -> CaseOutcome:
    """Update (if asked) then verify one case: pixels against the baseline, then its relation (fused ≈
    unfused, kohya = diffusers) and, for a schedule, that the schedule changed the image at all.
    A missing baseline without ``update`` is a failure carrying the command that creates it."""
    lines: list[str] = []
    if update:
        update_case(store, case, device)
        lines.append(f"{case.id}: baseline written to {store.dir / (case.id + '.png')}")
    elif not store.png_path(case.id).exists() or store.entry(case.id) is None:
        return CaseOutcome(case.id, False, [how_to_create(case.id, case.family, store.root, store.cls)])
    image = render_cached(case, device)
    try:
        result = verify_image(store, case, image, report_dir)
    except GoldenError as exc:
        return CaseOutcome(case.id, False, [str(exc)], None, update)
    ok = result.ok
    lines.append(result.message())
    if case.same_as is not None:
        rel = check_relation(case, image, render_cached(CASES_BY_ID[f"{case.family}-{case.same_as}"], device), store)
        ok &= rel.ok
        lines.append(rel.detail)
    if case.op == "schedule":
        constant = render_cached(replace(case, op="lora", scale=1.0), device)
        moved = float(np.abs(np.asarray(image, np.float64) - constant).max())
        distinct = moved > result.thresholds.max_abs
        ok &= distinct
        lines.append(f"{case.id}: schedule vs constant weight 1.0: max |diff| {moved:.3g} "
                     f"{'>' if distinct else '<='} {result.thresholds.max_abs:.3g}"
                     + ("" if distinct else "  FAILED: the weight change in callback_on_step_end had no effect"))
    return CaseOutcome(case.id, ok, lines, result, update)
