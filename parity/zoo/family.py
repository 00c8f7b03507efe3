"""What a model family exposes to the checks: components, targets, inputs, and how to build it."""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from parity.errors import ParityInputError


@dataclass(frozen=True)
class InputShape:
    """How big one denoiser call is: the latent grid side and the number of text tokens."""

    grid: int  # UNets: latent height = width; transformers: packed-token rows = columns
    seq: int  # text tokens the denoiser cross-attends to
    frames: int = 1  # latent frames of a video denoiser (Wan); 1 for images


@dataclass(frozen=True, kw_only=True)
class Family:
    """One model family: what a new one must say is its name and pipeline class, its default targets and
    layouts, how to build it tiny and how to drive it; everything after ``pipeline_call_args`` has the
    default most families take."""

    name: str
    pipeline_class: str  # diffusers pipeline class name: what a folder loads as, named in messages and docs
    # component → module-name suffixes targeted by default (attention, feed-forward, projections).
    default_targets: Mapping[str, tuple[str, ...]]
    layouts: tuple[str, ...]  # LoRA file layouts published for this family
    build_tiny: Callable[[int], Any]  # seed → pipeline in float32 on CPU
    # kwargs for one denoiser forward: SDXL nests added_cond_kwargs, Qwen-Image passes img_shapes as a list.
    # The shape defaults to the tiny one; benchmarks pass real ones (parity/zoo/fullsize.py).
    denoiser_inputs: Callable[..., dict[str, Any]]
    pipeline_call_args: Callable[[int], dict[str, Any]]
    # Components a LoRA can go into, in the order diffusers lists them (``_lora_loadable_modules``).
    lora_components: tuple[str, ...] = ("transformer",)
    denoiser: str = "transformer"  # or "unet"
    # component → Conv2d module-name suffixes for LoCon cases; empty for families without convs.
    conv_targets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # local folder → pipeline, where the pipeline class's from_pretrained with ``pretrained_kwargs`` is not
    # enough (a processor read without torchvision)
    load_pretrained: Callable[[str, torch.dtype], Any] | None = None
    pretrained_kwargs: Mapping[str, Any] = field(default_factory=dict)  # e.g. SD's safety_checker=None
    # The diffusers release that brought the pipeline as the zoo builds it; an older diffusers (the gate's
    # old env runs 0.35) leaves the family out with the reason ``unavailable`` gives.
    since: tuple[int, int] = (0, 0)
    since_what: str = ""  # what that release added, where it is more than the pipeline class
    # modules of other packages the zoo builds the family with, as (dotted module, what it is): a version set
    # without one (the compatibility matrix's older transformers) leaves the family out, saying so
    requires: tuple[tuple[str, str], ...] = ()
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    # sizes of the pipeline's components that must agree (parity/zoo/fit.py), checked on a model folder
    fits: tuple[Any, ...] = ()
    # diffusers' LoRA loader mixin where a finding belongs to it, not to one pipeline: Qwen-Image's
    # converter serves QwenImagePipeline and QwenImageEditPlusPipeline alike
    lora_loader: str = ""
    # pipe → the context a pipeline call runs in (Qwen-Image-Edit's image areas on its tiny model)
    call_context: Callable[[Any], contextlib.AbstractContextManager] = lambda _pipe: contextlib.nullcontext()
    # expert → the component it is, for a pipeline of several denoisers (Wan 2.2: high → transformer,
    # low → transformer_2); parity/zoo/experts.py places each file in its expert
    experts: Mapping[str, str] = field(default_factory=dict)
    # a pipeline output → its pictures, (n, H, W, 3): images, or a video's frames (Wan)
    images_of: Callable[[Any], Any] = lambda out: out.images
    # a denoiser forward's first output → one tensor: Z-Image's transformer returns a list of per-sample
    # tensors (its inputs are lists too), which the checks compare as one stacked tensor
    denoiser_tensor: Callable[[Any], torch.Tensor] = lambda out: out
    # (pipe, call arguments) → the arguments for that pipeline: FLUX.2 stacks three of its encoder's layers,
    # the published ones where the encoder has them, the tiny encoder's three otherwise
    fit_call_args: Callable[[Any, dict[str, Any]], dict[str, Any]] = lambda _pipe, args: args

    def unavailable(self) -> str | None:
        """None where this diffusers has the family's pipeline, else why the family is absent. Read from the
        installed version: importing diffusers here would cost every command a second and a half at start."""
        from parity.versions import library_versions, version_at_least

        if version_at_least("diffusers", self.since):
            missing = [(module, what) for module, what in self.requires if not _module_file_exists(module)]
            if not missing:
                return None
            module, what = missing[0]
            package = module.split(".")[0]
            return f"{package} {library_versions().get(package, '')} has no {what} ({module})".replace("  ", " ")
        what = self.since_what or self.pipeline_class
        return (f"diffusers {library_versions()['diffusers']} has no {what} "
                f"(added in diffusers {'.'.join(map(str, self.since))})")

    def load(self, path: str, dtype: torch.dtype) -> Any:
        """The pipeline in the local folder ``path``, as diffusers loads it for a user (offline)."""
        if self.load_pretrained is not None:
            return self.load_pretrained(path, dtype)
        import diffusers

        return from_pretrained(getattr(diffusers, self.pipeline_class), path, dtype, **self.pretrained_kwargs)

    def components(self, pipe: Any) -> dict[str, nn.Module]:
        """The LoRA-capable components present in ``pipe`` (a family may build some as None)."""
        return {c: getattr(pipe, c) for c in self.lora_components if getattr(pipe, c, None) is not None}

    def denoisers(self, pipe: Any) -> list[str]:
        """The denoiser and every other expert the pipeline has (Wan 2.2's transformer_2), in order."""
        names = dict.fromkeys([self.denoiser, *self.experts.values()])
        return [n for n in names if getattr(pipe, n, None) is not None]

    def denoiser_step(self, pipe: Any, component: str, seed: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """One forward of ``component`` (the denoiser, or another expert) on the family's seeded inputs in
        ``dtype`` (default: the model's), as one tensor (``denoiser_tensor``). The caller picks no_grad and
        float64 computation around it."""
        denoiser = getattr(pipe, component)
        inputs = self.denoiser_inputs(pipe, seed, dtype or denoiser.dtype)
        return self.denoiser_tensor(denoiser(**inputs, return_dict=False)[0])

    def call_args(self, pipe: Any, seed: int) -> dict[str, Any]:
        """Pipeline call arguments with tensors in the pipeline's dtype (Qwen-Image takes its latents'
        dtype from prompt_embeds, so float32 embeddings would break a bfloat16 pipeline)."""
        dtype = getattr(pipe, self.denoiser).dtype
        return {
            k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in self.fit_call_args(pipe, self.pipeline_call_args(seed)).items()
        }

    def call(self, pipe: Any, args: Mapping[str, Any]) -> Any:
        """``pipe(**args)`` inside the family's ``call_context``: every pipeline call goes through here."""
        with self.call_context(pipe):
            return pipe(**args)

    def render(self, pipe: Any, args: Mapping[str, Any]) -> Any:
        """The pictures of one ``call``: images, or the frames of a video."""
        return self.images_of(self.call(pipe, args))


def pipeline_namespace(pipe: Any) -> dict[str, Any]:
    """The globals of the pipeline's own module, which its code reads names from at call time. Read from
    its functions, not from sys.modules: pytester's in-process runs restore sys.modules afterwards,
    dropping the modules first imported inside them; and past the decorators on ``__call__``."""
    return getattr(type(pipe), "prepare_latents", inspect.unwrap(type(pipe).__call__)).__globals__


def select_modules(names: list[str], suffixes: tuple[str, ...]) -> list[str]:
    """Module names equal to or ending in ``.suffix`` for any suffix (PEFT's target_modules rule)."""
    return [n for n in names if any(n == s or n.endswith("." + s) for s in suffixes)]


def pretrained_dir(path: str) -> str:
    """``path`` if it looks like a diffusers pipeline folder; bad input naming it otherwise."""
    if not os.path.isdir(path):
        raise ParityInputError("model path is not a directory", path=path)
    if not os.path.exists(os.path.join(path, "model_index.json")):
        raise ParityInputError("not a diffusers pipeline folder (model_index.json missing)", path=path)
    return path


def from_pretrained(pipeline_class: type, path: str, dtype: torch.dtype, **kwargs: Any) -> Any:
    """A user's local diffusers folder, never the hub; a folder it cannot read is bad input naming it."""
    from parity.zoo.loading import pretrained_kwargs, quiet_loader, size_mismatch, transformers_load_reports

    pretrained_dir(path)
    try:
        with quiet_loader(), transformers_load_reports() as reports:
            pipe = pipeline_class.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True,
                                                  **pretrained_kwargs(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise ParityInputError(f"cannot load a {pipeline_class.__name__} from it ({exc})", path=path) from None
    except RuntimeError as exc:  # transformers: a component's config.json and weights disagree in size
        if (mismatch := size_mismatch(exc, reports)) is None:
            raise
        raise ParityInputError(f"cannot load a {pipeline_class.__name__} from it: {mismatch}", path=path) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _module_file_exists(module: str) -> bool:
    """Whether ``module`` (a.b.c) is a file of its installed package, found without importing the package
    (unavailable() runs as every command starts)."""
    import importlib.util

    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    return any(os.path.isfile(os.path.join(root, *rest) + ".py") or os.path.isdir(os.path.join(root, *rest))
               for root in spec.submodule_search_locations)
