"""Which expert of a several-denoiser pipeline a LoRA file goes into (Wan 2.2 A14B: ``high`` is
``transformer``, the high-noise expert; ``low`` is ``transformer_2``), and how diffusers is told.

A file's keys name ``transformer`` (or no component at all) whichever expert it was trained for: the
expert is a choice made when loading, ``load_lora_weights(..., load_into_transformer_2=True)``. So
a file is read against the transformer's module tree and then *placed*: its modules moved to the
components of its expert (both, for ``both``). Everything downstream (reference merge, snapshots,
what diffusers placed) speaks in the placed components.

The expert comes from ``--expert``, else from the file (its name or metadata: parity/lora/expertguess.py),
else ``high``, what ``load_lora_weights`` does without the argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from parity.errors import ParityInputError
from parity.lora.neutral import DoraModule, LoraFile, Module

EXPERT_CHOICES = ("high", "low", "both")
DEFAULT = "high"
# The component every expert's file names; a file placed in another expert moves from here.
FILE_COMPONENT = "transformer"
LOAD_INTO_SECOND = {"load_into_transformer_2": True}


def check_expert_option(family: Any, option: str | None) -> None:
    """``--expert`` is for a family of several denoisers only."""
    if option is not None and not family.experts:
        raise ParityInputError(f"--expert {option}: the {family.name} family has one denoiser, no experts")
    if option is not None and option not in EXPERT_CHOICES:
        raise ParityInputError(f"--expert {option}: choose from {', '.join(EXPERT_CHOICES)}")


def expert_for(family: Any, lora: LoraFile, option: str | None, pipe: Any) -> tuple[LoraFile, str]:
    """``lora`` placed in its expert, and what chose it: ``--expert``, the file's name or metadata
    (parity/lora/expertguess.py), else ``high`` as diffusers loads by default. A family of one denoiser
    leaves the file as read."""
    if not family.experts:
        return lora, ""
    if option is not None:
        expert, why = option, "--expert"
    else:
        from parity.lora.expertguess import guess_expert

        ratio = dict(getattr(pipe, "config", None) or {}).get("boundary_ratio")  # the model's own boundary
        kwargs = {"boundary": float(ratio) * 1000} if ratio else {}
        guessed = guess_expert(lora.path, lora.metadata, **kwargs)
        expert, why = guessed if guessed is not None else (DEFAULT, "load_lora_weights' default")
    check_present(family, pipe, expert, lora.path)
    return place(lora, family, expert), why


def components_of(family: Any, expert: str) -> tuple[str, ...]:
    """The components a file for ``expert`` goes into."""
    experts: Mapping[str, str] = family.experts
    if expert == "both":
        return tuple(experts.values())
    if expert not in experts:
        raise ParityInputError(f"--expert {expert}: the {family.name} family has experts "
                               f"{', '.join(experts) or 'none'}" + (", both" if experts else ""))
    return (experts[expert],)


def load_kwargs(family: Any, expert: str | None) -> list[dict[str, Any]]:
    """One ``load_lora_weights`` kwargs dict per load a file for ``expert`` takes: diffusers loads a
    file into one transformer per call, so ``both`` is two loads of one adapter name; no expert (a
    family of one denoiser, a file not placed) is one plain load."""
    if not expert:
        return [{}]
    return [dict(LOAD_INTO_SECOND) if c != FILE_COMPONENT else {} for c in components_of(family, expert)]


def check_present(family: Any, pipe: Any, expert: str, path: str | None) -> None:
    """Bad input naming the file where its expert's component is absent (a Wan 2.1 folder has no
    transformer_2: diffusers raises an AttributeError there)."""
    for component in components_of(family, expert):
        if getattr(pipe, component, None) is None:
            raise ParityInputError(f"is for the {expert}-noise expert ({component}), which this model does "
                                   "not have (a Wan 2.1 model has one transformer): pass --expert high",
                                   path=path)


def _moved(m: Module, component: str) -> Module:
    if isinstance(m, DoraModule):  # its component is its inner module's
        return replace(m, inner=_moved(m.inner, component))
    return m if m.component == component else replace(m, component=component)


def place(lora: LoraFile, family: Any, expert: str) -> LoraFile:
    """``lora`` (read against ``transformer``) with its modules in the components of ``expert``."""
    targets = components_of(family, expert)
    if targets == (FILE_COMPONENT,):
        return replace(lora, expert=expert)
    modules, sources, placement = {}, {}, {}
    for component in targets:
        for (c, module), m in lora.modules.items():
            key = (component if c == FILE_COMPONENT else c, module)
            modules[key] = _moved(m, key[0])
            sources[key] = lora.sources.get((c, module), ())
        for stem, where in lora.placement.items():
            placement.setdefault(stem, ())
            placement[stem] += tuple(f"{component}.{w.split('.', 1)[1]}" if w.startswith(FILE_COMPONENT + ".")
                                     else w for w in where)
    return replace(lora, modules=modules, sources=sources, placement=placement, expert=expert)
