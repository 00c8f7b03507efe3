"""A model folder's weights read one tensor at a time from its safetensors files (``safe_open``), so a
check can take a targeted weight's base value from disk instead of keeping a copy of it in memory.

A tensor is read as ``from_pretrained(torch_dtype=…)`` loads it (stored value, cast to the dtype), and a
check uses it only after it proved, at snapshot time, that the disk value is bit for bit the loaded one.
"""

from __future__ import annotations

import glob
import os

import torch


class CheckpointWeights:
    def __init__(self, model_path: str) -> None:
        self.model_path = model_path
        self._files: dict[str, dict[str, str]] = {}  # component → key → file

    def _index(self, component: str) -> dict[str, str]:
        if component not in self._files:
            from safetensors import safe_open

            keys: dict[str, str] = {}
            for path in sorted(glob.glob(os.path.join(self.model_path, component, "*.safetensors"))):
                with safe_open(path, "pt") as f:
                    keys.update(dict.fromkeys(f.keys(), path))
            self._files[component] = keys
        return self._files[component]

    def read(self, component: str, name: str, like: torch.Tensor) -> torch.Tensor | None:
        """``component``'s parameter ``name`` from disk in ``like``'s dtype and device, or None when
        the folder does not hold it under that name."""
        from safetensors import safe_open

        index = self._index(component)
        for key in (name, "text_model." + name, name.removeprefix("text_model.")):
            if key in index:
                with safe_open(index[key], "pt") as f:
                    return f.get_tensor(key).to(dtype=like.dtype, device=like.device)
        return None
