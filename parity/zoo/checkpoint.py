"""A model folder's weights read one tensor at a time from its safetensors files, so a check can take a
targeted weight's base value from disk instead of keeping a copy of it in memory.

A tensor is read as ``from_pretrained(torch_dtype=…)`` loads it (stored value, cast to the dtype), and a
check uses it only after it proved, at snapshot time, that the disk value is bit for bit the loaded one.

Each file's header is parsed once, and a tensor is mapped from the file alone, copy-on-write, for as long
as the tensor it is read into lives: opening the file with ``safe_open`` per tensor parsed its header
every time (2 ms each: 1.5 s over a full-size SD1.5 UNet's 686 tensors, paid on every pass); keeping
``safe_open``'s map of the whole file open would count every page it touched in the process's resident
memory, against the memory bound; and reading into a fresh tensor faults in fresh pages (a third
slower than mapping the file's cached pages).
"""

from __future__ import annotations

import glob
import json
import mmap
import os
import struct
from dataclasses import dataclass

import torch

# safetensors' dtype names (the format's specification) → torch
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class _Entry:
    path: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offset of the tensor's data in the file
    nbytes: int


def _header(path: str) -> dict[str, _Entry]:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    out = {}
    for key, info in header.items():
        if key == "__metadata__" or info.get("dtype") not in _DTYPES:
            continue
        begin, end = info["data_offsets"]
        out[key] = _Entry(path, _DTYPES[info["dtype"]], tuple(info["shape"]), 8 + length + begin, end - begin)
    return out


def _mapped(entry: _Entry) -> torch.Tensor:
    """The stored tensor on a private, copy-on-write map of its bytes (unmapped when the tensor dies)."""
    if not entry.nbytes:
        return torch.empty(entry.shape, dtype=entry.dtype)
    start = entry.start - entry.start % mmap.ALLOCATIONGRANULARITY
    with open(entry.path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), entry.start - start + entry.nbytes, access=mmap.ACCESS_COPY, offset=start)
    raw = torch.frombuffer(mapped, dtype=torch.uint8, count=entry.nbytes, offset=entry.start - start)
    return raw.view(entry.dtype).reshape(entry.shape)


class CheckpointWeights:
    def __init__(self, model_path: str) -> None:
        self.model_path = model_path
        self._files: dict[str, dict[str, _Entry]] = {}  # component → key → where it is

    def _index(self, component: str) -> dict[str, _Entry]:
        if component not in self._files:
            entries: dict[str, _Entry] = {}
            for path in sorted(glob.glob(os.path.join(self.model_path, component, "*.safetensors"))):
                entries.update(_header(path))
            self._files[component] = entries
        return self._files[component]

    def read(self, component: str, name: str, like: torch.Tensor, keep_dtype: bool = False) -> torch.Tensor | None:
        """``component``'s parameter ``name`` from disk in ``like``'s dtype (``keep_dtype``: as stored)
        and device, or None when the folder does not hold it under that name."""
        index = self._index(component)
        for key in (name, "text_model." + name, name.removeprefix("text_model.")):
            if key in index:
                stored = _mapped(index[key])
                return stored.to(dtype=stored.dtype if keep_dtype else like.dtype, device=like.device)
        return None
