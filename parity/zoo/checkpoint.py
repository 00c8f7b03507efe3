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

import json
import mmap
import os
import struct
import warnings
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


def header_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a safetensors file, from its header alone."""
    return {key: entry.shape for key, entry in _header(path).items()}


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


class CheckpointWeights:
    """A model source's stored tensors by (component, diffusers parameter name): a folder's component files
    (the ones from_pretrained loaded), or a single-file checkpoint read through its original names
    (parity/zoo/original_names.py), a parameter that is no view of one stored tensor having none."""

    def __init__(self, model_path: str) -> None:
        from parity.zoo.single_file import detect_family, resolve_single_file
        from parity.zoo.source import variant_of

        self.model_path = model_path
        self.variant = variant_of(model_path)
        self._files: dict[str, dict[str, _Entry]] = {}  # component → key → where it is
        self._single: tuple[str, str] | None = None  # (family, configs folder) of a single file
        self._prefix = ""  # of every original name in a single file (parity/zoo/original_names.py key_prefix)
        self._configs: dict[str, dict] = {}
        self.disagreed: list[str] = []  # component.parameter whose disk value is not the loaded one
        if os.path.isfile(model_path):
            entries = _header(str(model_path))
            found = detect_family(list(entries))
            if found is not None:
                source = resolve_single_file(str(model_path), found[0], getattr(model_path, "config", None))
                from parity.zoo.original_names import key_prefix

                self._single = (found[0], source.config or "")
                self._prefix = key_prefix(found[0], entries)
            self._files[""] = entries

    def _index(self, component: str) -> dict[str, _Entry]:
        if self._single is not None or os.path.isfile(self.model_path):
            return self._files[""]
        if component not in self._files:
            entries: dict[str, _Entry] = {}
            for path in loaded_files(os.path.join(self.model_path, component), self.variant):
                entries.update(_header(path))
            self._files[component] = entries
        return self._files[component]

    def _config(self, component: str) -> dict:
        if component not in self._configs:
            path = os.path.join(self._single[1], component, "config.json")
            with open(path) as f:
                self._configs[component] = json.load(f)
        return self._configs[component]

    def _stored(self, component: str, name: str) -> torch.Tensor | None:
        index = self._index(component)
        if self._single is not None:
            from parity.zoo.original_names import original_view

            try:
                view = original_view(self._single[0], component, name, self._config(component))
            except (OSError, KeyError):
                return None
            key = None if view is None else self._prefix + view.key
            if key not in index or view.shape(index[key].shape) is None:
                return None
            return view.apply(_mapped(index[key]))
        for key in (name, "text_model." + name, name.removeprefix("text_model.")):
            if key in index:
                return _mapped(index[key])
        return None

    def disagrees(self, component: str, name: str) -> None:
        """The snapshot proof found ``component.name`` on disk differing from the loaded model: the check
        keeps a copy instead (its verdict stands); said once per checkpoint, since the read-back then
        reads another model than diffusers loaded (a file changed during the run, or the wrong variant)."""
        if not self.disagreed:
            warnings.warn(f"{self.model_path}: {component}.{name} on disk differs from the loaded model "
                          "(kept in memory instead of read back)", stacklevel=2)
        self.disagreed.append(f"{component}.{name}")

    def read(self, component: str, name: str, like: torch.Tensor, keep_dtype: bool = False) -> torch.Tensor | None:
        """``component``'s parameter ``name`` from disk in ``like``'s dtype (``keep_dtype``: as stored)
        and device, or None when the source does not hold it as one stored tensor."""
        stored = self._stored(component, name)
        if stored is None:
            return None
        return stored.to(dtype=stored.dtype if keep_dtype else like.dtype, device=like.device)
