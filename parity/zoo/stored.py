"""Safetensors files read from their headers, one tensor at a time: the layer under every read-back of base
weights (parity/zoo/checkpoint.py) and every question about what a model source holds (parity/zoo/source.py,
single_file.py). It imports nothing of the zoo, so each of those can use it without an import cycle.

Each file's header is parsed once, and a tensor is mapped from the file alone, copy-on-write, for as long
as the tensor it is read into lives (why: parity/zoo/checkpoint.py).
"""

from __future__ import annotations

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
class Entry:
    path: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offset of the tensor's data in the file
    nbytes: int


def header(path: str) -> dict[str, Entry]:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    out = {}
    for key, info in header.items():
        if key == "__metadata__" or info.get("dtype") not in _DTYPES:
            continue
        begin, end = info["data_offsets"]
        out[key] = Entry(path, _DTYPES[info["dtype"]], tuple(info["shape"]), 8 + length + begin, end - begin)
    return out


def mapped(entry: Entry) -> torch.Tensor:
    """The stored tensor on a private, copy-on-write map of its bytes (unmapped when the tensor dies)."""
    if not entry.nbytes:
        return torch.empty(entry.shape, dtype=entry.dtype)
    start = entry.start - entry.start % mmap.ALLOCATIONGRANULARITY
    with open(entry.path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), entry.start - start + entry.nbytes, access=mmap.ACCESS_COPY, offset=start)
    raw = torch.frombuffer(mapped, dtype=torch.uint8, count=entry.nbytes, offset=entry.start - start)
    return raw.view(entry.dtype).reshape(entry.shape)


def header_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a safetensors file, from its header alone."""
    return {key: entry.shape for key, entry in header(path).items()}


WEIGHT_NAMES = ("diffusion_pytorch_model", "model")  # diffusers' and transformers' weights files


def loaded_files(folder: str, variant: str | None, fallback: bool = True) -> list[str]:
    """The safetensors files ``from_pretrained(variant=…, use_safetensors=True)`` loads from one component
    folder: the shards its ``*.safetensors.index[.VARIANT].json`` lists, else its one
    ``*[.VARIANT].safetensors``; a component without the variant loads the full files (``fallback``), as
    diffusers does. Other files beside them (the other variant, ``.bin`` pickles) are never read."""
    for v in ([variant, None] if variant and fallback else [variant]):
        tag = f".{v}" if v else ""
        for base in WEIGHT_NAMES:
            index = os.path.join(folder, f"{base}.safetensors.index{tag}.json")
            if os.path.isfile(index):
                with open(index) as f:
                    weight_map = json.load(f).get("weight_map", {})
                return sorted({os.path.join(folder, name) for name in weight_map.values()})
            single = os.path.join(folder, f"{base}{tag}.safetensors")
            if os.path.isfile(single):
                return [single]
    return []
