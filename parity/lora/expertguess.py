"""Which Wan 2.2 expert a LoRA file was trained for, from what its trainer wrote into its name or its
metadata; None when the file says nothing (the caller then uses --expert, else the default).

Only what trainers really write is read:

* ai-toolkit (ostris/ai-toolkit ``extensions_built_in/diffusion_models/wan22/wan22_14b_model.py``,
  ``save_lora``): a two-expert run saves ``<name>_high_noise.safetensors`` (its transformer_1) and
  ``<name>_low_noise.safetensors`` (transformer_2); the keys and the metadata of the two are alike.
* Wan2.2-Lightning / LightX2V releases name the files after the Wan 2.2 checkpoint folders
  (Wan-Video/Wan2.2 ``wan/configs/wan_t2v_A14B.py``: ``high_noise_checkpoint = 'high_noise_model'``,
  ``low_noise_checkpoint = 'low_noise_model'``): ``high_noise_model.safetensors``.
* musubi-tuner (kohya-ss/musubi-tuner ``src/musubi_tuner/training/trainer_base.py`` and
  ``utils/sai_model_spec.py``): ``--min_timestep`` / ``--max_timestep`` are saved as
  ``modelspec.timestep_range`` "min,max" (0..1000), which docs/wan.md tells a one-expert Wan 2.2 run to
  set to the expert's side of the boundary (T2V 875, I2V 900). ``ss_sd_model_name`` is the basename of
  ``--dit``; in a two-expert run ``--dit`` is the *low*-noise model and ``--dit_high_noise`` (not
  recorded) the high one, so only a high-noise ``--dit`` says which expert: a low-noise name may be a
  file for both.

Words merely containing "high" or "low" (``my_lowres_lora``, ``highlights``) say nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePath

BOUNDARY = 875.0  # Wan 2.2 T2V A14B's boundary_ratio x 1000 (I2V: 900)

# ai-toolkit's suffix; the checkpoint folder names Wan2.2 ships and Lightning's files reuse
_NAME_RULES = (
    (re.compile(r"_(high|low)_noise$"), "file name ends in _{0}_noise (ai-toolkit)"),
    (re.compile(r"(?:^|[_\-.])(high|low)_noise_model$"),
     "file name ends in {0}_noise_model (Wan 2.2's expert checkpoint name, as Wan2.2-Lightning files use it)"),
)
_RANGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*$")


def _from_name(path: str | None) -> tuple[str, str] | None:
    if not path:
        return None
    stem = PurePath(path).name
    for suffix in (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for pattern, reason in _NAME_RULES:
        m = pattern.search(stem.lower())
        if m:
            return m.group(1), reason.format(m.group(1))
    return None


def _from_timestep_range(value: str | None, boundary: float) -> tuple[str, str] | None:
    m = _RANGE.match(value or "")
    if m is None:
        return None
    low, high = float(m.group(1)), float(m.group(2))
    if low > high:
        return None
    if low >= boundary:
        return "high", f"modelspec.timestep_range {value} starts at or above the boundary {boundary:g} (musubi-tuner metadata)"
    if high <= boundary:
        return "low", f"modelspec.timestep_range {value} ends at or below the boundary {boundary:g} (musubi-tuner metadata)"
    return None


def _from_dit_name(value: str | None) -> tuple[str, str] | None:
    if value and re.search(r"(?:^|[_\-.])high_noise(?:[_\-.]|$)", value.lower()):
        return "high", f"ss_sd_model_name {value} is a high-noise --dit (musubi-tuner metadata)"
    return None


def guess_expert(path: str | None, metadata: Mapping[str, str], *,
                 boundary: float = BOUNDARY) -> tuple[str, str] | None:
    """(``"high"`` or ``"low"``, where it was read) for a file named ``path`` with safetensors header
    ``metadata``, or None when neither says. The name wins over metadata (ai-toolkit's two files
    carry one job's metadata); a timestep range over a high-noise ``--dit`` name."""
    metadata = metadata or {}
    return (_from_name(path)
            or _from_timestep_range(metadata.get("modelspec.timestep_range"), boundary)
            or _from_dit_name(metadata.get("ss_sd_model_name")))
