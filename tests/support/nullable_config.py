"""Which config fields of a diffusers model may be null: the ones a config.json that leaves them out
gives it (ConfigMixin fills an absent field with its ``__init__`` default, None for these).

A field counts when its default is None, this model sets it, and with it None diffusers still builds the
same model (the same parameters, of the same shapes) and runs it on the same inputs. Those are configs
diffusers accepts as valid; the suite must take them too (issue 30: ``"sample_size": null``)."""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from typing import Any

import torch


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def nulled(model: torch.nn.Module, fields: list[str]) -> torch.nn.Module:
    """``model`` rebuilt from its config with ``fields`` None, holding the same weights."""
    config = {**model.config, **dict.fromkeys(fields)}
    twin = type(model).from_config(config)
    twin.load_state_dict(model.state_dict())
    return twin.to(next(model.parameters()).dtype).eval()


def nullable_fields(model: torch.nn.Module, inputs: Mapping[str, Any]) -> list[str]:
    """The fields of ``model``'s config that diffusers accepts as None (module docstring)."""
    defaults = inspect.signature(type(model).__init__).parameters
    shapes = _shapes(model)
    found = []
    for name, param in defaults.items():
        if param.default is not None or model.config.get(name) is None:
            continue
        try:
            twin = nulled(model, [name])
            if _shapes(twin) != shapes:
                continue
            with torch.no_grad():
                twin(**inputs)
        except Exception:  # diffusers does not take this field as None: not a config users can have
            continue
        found.append(name)
    return found


def null_in_folder(folder: str | os.PathLike, component: str, fields: list[str]) -> None:
    """Set ``fields`` to null in ``folder/component/config.json``, as a config written without them loads."""
    path = os.path.join(folder, component, "config.json")
    with open(path) as f:
        config = json.load(f)
    config.update(dict.fromkeys(fields))
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
