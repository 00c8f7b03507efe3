"""8-bit pixels: quantising a render, PNG bytes that depend on the pixels only, and the image metrics.

A video (FxHxWx3, Wan's frames) is stored as one picture, its frames side by side left to right (a
strip HxF·Wx3, no gaps, so it reads back exactly by a reshape), and compared frame by frame."""

from __future__ import annotations

import io
import math
import os

import numpy as np

SSIM_WIN = 7  # odd, ≤ 32: fits the 32x32 zoo images (skimage's own default, passed explicitly)


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


def strip(frames: np.ndarray) -> np.ndarray:
    """FxHxWxC frames → one HxF·WxC picture, frame 0 leftmost."""
    frames = np.asarray(frames)
    return np.concatenate(list(frames), axis=1)


def unstrip(picture: np.ndarray, frames: int) -> np.ndarray:
    """The inverse of ``strip``: an HxF·WxC picture → FxHxWxC frames."""
    h, fw, c = picture.shape
    if fw % frames:
        raise ValueError(f"a {h}x{fw} picture is not {frames} frames side by side")
    return np.ascontiguousarray(picture.reshape(h, frames, fw // frames, c).transpose(1, 0, 2, 3))


def picture(pixels: np.ndarray) -> np.ndarray:
    """What is stored of a render: an image as is, a video's frames as one strip."""
    return strip(pixels) if np.ndim(pixels) == 4 else np.asarray(pixels)


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
