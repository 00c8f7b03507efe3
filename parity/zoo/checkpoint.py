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

import os
import warnings

import torch

from parity.zoo.loading import variant_of
from parity.zoo.stored import Entry, header, header_shapes, loaded_files, mapped

__all__ = ["CheckpointWeights", "header_shapes", "loaded_files"]


class CheckpointWeights:
    """A model source's stored tensors by (component, diffusers parameter name): a folder's component files
    (the ones from_pretrained loaded), or a single-file checkpoint read through its original names
    (parity/zoo/original_names.py), a parameter that is no view of one stored tensor having none."""

    def __init__(self, model_path: str) -> None:
        from parity.zoo.single_file import detect_family, resolve_single_file

        self.model_path = model_path
        self.variant = variant_of(model_path)
        self._files: dict[str, dict[str, Entry]] = {}  # component → key → where it is
        self._single: tuple[str, str] | None = None  # (family, configs folder) of a single file
        self._prefix = ""  # of every original name in a single file (parity/zoo/original_names.py key_prefix)
        self._configs: dict[str, dict] = {}
        self.disagreed: list[str] = []  # component.parameter whose disk value is not the loaded one
        if os.path.isfile(model_path):
            entries = header(str(model_path))
            found = detect_family(list(entries))
            if found is not None:
                source = resolve_single_file(str(model_path), found[0], getattr(model_path, "config", None))
                from parity.zoo.original_names import key_prefix

                self._single = (found[0], source.config or "")
                self._prefix = key_prefix(found[0], entries)
            self._files[""] = entries

    def _index(self, component: str) -> dict[str, Entry]:
        if "" in self._files:  # a single file: every component's tensors are in its one header
            return self._files[""]
        if component not in self._files:
            entries: dict[str, Entry] = {}
            for path in loaded_files(os.path.join(self.model_path, component), self.variant):
                entries.update(header(path))
            self._files[component] = entries
        return self._files[component]

    def _config(self, component: str) -> dict:
        if component not in self._configs:
            from parity.zoo.single_file import component_config

            self._configs[component] = component_config(self._single[1], component)
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
            return view.apply(mapped(index[key]))
        for key in (name, "text_model." + name, name.removeprefix("text_model.")):
            if key in index:
                return mapped(index[key])
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
