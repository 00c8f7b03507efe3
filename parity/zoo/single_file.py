"""Single-file checkpoints: which family a file is, which configs describe it, and loading it with
diffusers' ``from_single_file`` offline.

Without ``config=``, diffusers guesses the architecture from key names and downloads that repository's
configs (even with ``local_files_only=True``), so it is always given a local diffusers folder of configs,
chosen in this order:
1. ``--model-config DIR``, the user's own (a diffusers folder: its ``*/config.json`` are read, no weights);
2. the family's tiny zoo configs, where the file's shapes are the tiny model's;
3. the family's published architecture's configs (the release's ``config.json`` values the project holds in
   parity/zoo/fullsize.py and parity/zoo/published.py, the VAEs' below).
A file whose shapes fit none of them is bad input naming the first tensor that differs from the published
one. The configs folders hold configs only (no weights) and are written once into the cache.

SD1.5, SD 2.x and SDXL files hold the whole pipeline (UNet, VAE, text encoders). FLUX.1 and Qwen-Image files hold the
transformer alone: the rest of the pipeline is the project's own build, the tiny parts, or the published
architecture's resized parts (parity/zoo/published.py) beside a published-size transformer.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from typing import Any

import torch

from parity.errors import ParityInputError
from parity.zoo.original_names import key_prefix, original_view
from parity.zoo.loading import Source

# The key that shows what a file is, per family, in the original names (first match wins: SDXL files also
# hold model.diffusion_model.input_blocks; SD 2.x's OpenCLIP-H is under cond_stage_model.model).
SIGNATURES: tuple[tuple[str, str], ...] = (
    ("sdxl", r"conditioner\.embedders\.\d+\.model\..+"),
    ("sd2", r"cond_stage_model\.model\..+"),
    ("sd15", r"cond_stage_model\.transformer\..+"),
    ("flux", r"(model\.diffusion_model\.)?double_blocks\.\d+\.img_attn\.qkv\.weight"),
    ("qwenimage", r"transformer_blocks\.\d+\.img_mod\.1\.weight"),
)
WHOLE_PIPELINE = ("sd15", "sd2", "sdxl")  # the others' files hold the transformer alone
# The families whose original names parity/zoo/original_names.py knows (the read-back and the choice of
# configs need them); another family's single file is refused rather than loaded with no read-back.
SUPPORTED = ("sd15", "sd2", "sdxl", "flux", "qwenimage")
# runwayml/stable-diffusion-v1-5, stabilityai/stable-diffusion-2-1 and stable-diffusion-xl-base-1.0 vae/config.json
_PUBLISHED_VAE = dict(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4,
                      norm_num_groups=32, in_channels=3, out_channels=3, act_fn="silu",
                      down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
PUBLISHED_VAE = {"sd15": {**_PUBLISHED_VAE, "sample_size": 512, "scaling_factor": 0.18215},
                 "sd2": {**_PUBLISHED_VAE, "sample_size": 768, "scaling_factor": 0.18215},
                 "sdxl": {**_PUBLISHED_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}}


def detect_family(keys: list[str]) -> tuple[str, str] | None:
    """(family, the key that shows it) of a single file's keys; None where they fit no family."""
    for family, pattern in SIGNATURES:
        hit = next((k for k in keys if re.fullmatch(pattern, k)), None)
        if hit is not None:
            return family, hit
    return None


def _shapes(path: str) -> dict[str, tuple[int, ...]]:
    from parity.zoo.stored import header_shapes

    try:
        return header_shapes(path)
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise ParityInputError(f"not a readable safetensors file ({type(exc).__name__}: {exc})", path=path) from None


# ---------------------------------------------------------------- config folders


def _component_class(folder: str, component: str) -> type:
    import importlib

    with open(os.path.join(folder, "model_index.json")) as f:
        library, name = json.load(f)[component]
    module = importlib.import_module(library)
    return getattr(module, name)


def meta_model(folder: str, component: str) -> torch.nn.Module:
    """``component`` built from the folder's config on the meta device: its parameter names and shapes."""
    cls = _component_class(folder, component)
    sub = os.path.join(folder, component)
    with torch.device("meta"):
        if hasattr(cls, "config_class"):  # transformers
            return cls(cls.config_class.from_pretrained(sub))
        return cls.from_config(cls.load_config(sub))


def component_config(folder: str, component: str) -> dict[str, Any]:
    with open(os.path.join(folder, component, "config.json")) as f:
        return json.load(f)


def _save_configs(pipe: Any, folder: str, published: dict[str, Any]) -> None:
    """The pipeline's configs (``published`` components' in place of its own), no weights."""
    pipe.save_config(folder)  # model_index.json
    for name in pipe.config.keys():
        part = published.get(name, getattr(pipe, name, None))
        if part is None or name.startswith("_"):
            continue
        sub = os.path.join(folder, name)
        if isinstance(part, dict):  # a published config written out as its config.json
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, "config.json"), "w") as f:
                json.dump(part, f, indent=2)
        elif hasattr(part, "save_config"):  # diffusers models and schedulers
            part.save_config(sub)
        elif hasattr(part, "config") and hasattr(part.config, "save_pretrained"):  # transformers models
            part.config.save_pretrained(sub)
        elif hasattr(part, "save_pretrained"):  # tokenizers
            part.save_pretrained(sub)


def _published_parts(family: str) -> dict[str, Any]:
    import parity.zoo.fullsize as fullsize
    import parity.zoo.published as published

    builders = {"sd15": {"unet": fullsize.sd15_unet}, "sd2": {"unet": fullsize.sd2_unet},
                "sdxl": {"unet": fullsize.sdxl_unet},
                "flux": {"transformer": fullsize.flux_transformer},
                "qwenimage": {"transformer": fullsize.qwenimage_transformer}}[family]
    for name, build in published.PUBLISHED.get(family, {}).items():
        builders.setdefault(name, lambda build=build: build(None))
    with torch.device("meta"):
        parts: dict[str, Any] = {name: build() for name, build in builders.items()}
    if family in PUBLISHED_VAE:
        parts["vae"] = {"_class_name": "AutoencoderKL", **PUBLISHED_VAE[family]}
    return parts


def config_folder(family: str, which: str) -> str:
    """The tiny or published ``family`` configs as a diffusers folder in the cache, written once."""
    from parity.zoo.published import cache_root

    return _config_folder(family, which, cache_root())


@functools.lru_cache(maxsize=None)
def _config_folder(family: str, which: str, root: str) -> str:
    from parity.versions import library_versions
    from parity.zoo.registry import get_family

    versions = {k: v for k, v in library_versions().items() if k in ("diffusers", "transformers")}
    key = hashlib.sha256(json.dumps([family, which, versions, PUBLISHED_VAE], sort_keys=True).encode()).hexdigest()
    folder = os.path.join(root, "configs", f"{family}-{which}-{key[:12]}")
    if os.path.isfile(os.path.join(folder, "model_index.json")):
        return folder
    import tempfile

    os.makedirs(os.path.dirname(folder), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".configs-", dir=os.path.dirname(folder))
    _save_configs(get_family(family).build_tiny(0), staging,
                  _published_parts(family) if which == "published" else {})
    try:
        os.rename(staging, folder)
    except OSError:  # another run wrote the same folder first
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _file_components(family: str, folder: str) -> list[str]:
    if family not in WHOLE_PIPELINE:
        return ["transformer"]
    with open(os.path.join(folder, "model_index.json")) as f:
        index = json.load(f)
    return [c for c in ("unet", "vae", "text_encoder", "text_encoder_2") if c in index and index[c][0]]


def misfit(family: str, folder: str, shapes: dict[str, tuple[int, ...]]) -> str | None:
    """The first parameter of the folder's models the file does not hold at its shape, in words; None if
    every one it maps is there."""
    prefix = key_prefix(family, shapes)
    for component in _file_components(family, folder):
        try:
            model = meta_model(folder, component)
            config = component_config(folder, component)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            return f"{component}: its config cannot be read ({type(exc).__name__}: {exc})"
        for name, t in model.state_dict().items():
            view = original_view(family, component, name, config)
            if view is None:
                continue
            key = prefix + view.key
            if key not in shapes:
                return f"{component}.{name} is not in the file (no key {key})"
            if view.shape(shapes[key]) != tuple(t.shape):
                return f"{component}.{name} is {list(t.shape)} in the configs, the file's {key} is {list(shapes[key])}"
    return None


@functools.lru_cache(maxsize=64)
def _resolve(path: str, stamp: tuple[float, int], family: str, config: str | None) -> Source:
    if family not in SUPPORTED:
        raise ParityInputError(f"single-file checkpoints are read for {', '.join(SUPPORTED)}, not {family} (give "
                               "a diffusers folder)", path=path)
    shapes = _shapes(path)
    found = detect_family(list(shapes))
    if found is None:
        some = ", ".join(sorted(shapes)[:3]) or "none"
        raise ParityInputError(f"its keys fit no family's single-file checkpoint (LDM/SGM, BFL or Qwen-Image "
                               f"names; first keys: {some})", path=path)
    detected, key = found
    if detected != family:
        raise ParityInputError(f"a {detected} checkpoint, not {family}: try --family {detected}", path=path, key=key)
    if config is not None:
        if not os.path.isfile(os.path.join(config, "model_index.json")):
            raise ParityInputError("--model-config: not a diffusers pipeline folder (model_index.json missing)",
                                   path=config)
        problem = misfit(family, config, shapes)
        if problem is not None:
            raise ParityInputError(f"the file does not fit the configs of --model-config {config}: {problem}", path=path)
        parts = "tiny" if misfit(family, config_folder(family, "tiny"), shapes) is None else "published"
        return Source("single-file", path, config=config, configs=f"--model-config {config}", parts=parts)
    problem = None
    for which in ("tiny", "published"):
        folder = config_folder(family, which)
        problem = misfit(family, folder, shapes)
        if problem is None:
            words = f"the tiny {family} zoo's" if which == "tiny" else f"the published {family} architecture's"
            return Source("single-file", path, config=folder, configs=f"{words}, {folder}", parts=which)
    raise ParityInputError(f"the file fits neither the tiny nor the published {family} configs ({problem}); give "
                           "the configs it was made with as --model-config DIR (a diffusers folder)", path=path)


def resolve_single_file(path: str, family: Any, config: str | None) -> Source:
    st = os.stat(path)
    name = family if isinstance(family, str) else family.name
    return _resolve(path, (st.st_mtime, st.st_size), name, config)


# ---------------------------------------------------------------- loading


def _unloaded(pipe: Any, components: list[str]) -> str | None:
    for c in components:
        model = getattr(pipe, c, None)
        if model is None:
            continue
        meta = [n for n, t in model.state_dict().items() if t.is_meta]
        if meta:
            return f"{c}: {len(meta)} tensors (first {meta[0]})"
    return None


def _rest_of_pipeline(family: Any, source: Source, dtype: torch.dtype) -> dict[str, Any]:
    """A transformer-only file's pipeline parts: the tiny pipeline's, or beside a published transformer the
    published architecture's resized parts (parity/zoo/published.py), deterministic weights."""
    from parity.zoo.published import PUBLISHED, SEED
    from parity.zoo.weights import fill_deterministic

    tiny = family.build_tiny(SEED)
    parts = {name: getattr(tiny, name) for name in tiny.config.keys() if not name.startswith("_")}
    if source.parts == "published":
        for name, build in PUBLISHED.get(family.name, {}).items():
            if name != "transformer":
                parts[name] = fill_deterministic(build(None), SEED, f"{family.name}/published/{name}")
    return {n: p.to(dtype) if isinstance(p, torch.nn.Module) else p for n, p in parts.items()}


def _width_note(family: str, path: str) -> str:
    """What a FLUX.1 file's width is: diffusers' converter splits the fused qkv at the published width."""
    if family != "flux":
        return ""
    shapes = _shapes(path)
    qkv = next((s for k, s in shapes.items() if k.endswith("double_blocks.0.img_attn.qkv.weight")), None)
    return "" if qkv is None else f"; the file's attention width is {qkv[1]} (FLUX.1-dev's: 3072)"


def load_single_file(family: Any, source: Source, dtype: torch.dtype) -> Any:
    """The pipeline a single file gives, loaded by diffusers' ``from_single_file`` with ``source.config``."""
    import diffusers

    from parity.zoo.loading import quiet_loader

    kwargs = dict(config=source.config, local_files_only=True, torch_dtype=dtype)
    try:
        with quiet_loader():
            if family.name in WHOLE_PIPELINE:
                cls = getattr(diffusers, family.pipeline_class)
                extra = {"add_watermarker": False} if family.name == "sdxl" \
                    else {"safety_checker": None, "requires_safety_checker": False}
                pipe = cls.from_single_file(source.path, **kwargs, **extra)
                components = _file_components(family.name, source.config)
            else:
                cls = _component_class(source.config, "transformer")
                transformer = cls.from_single_file(source.path, subfolder="transformer", **kwargs)
                pipe = getattr(diffusers, family.pipeline_class)(
                    **{**_rest_of_pipeline(family, source, dtype), "transformer": transformer})
                components = ["transformer"]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        message = " ".join(str(exc).split())[:300]
        raise ParityInputError(f"diffusers' from_single_file could not load it ({type(exc).__name__}: {message})"
                               + _width_note(family.name, source.path), path=source.path) from None
    # diffusers leaves a parameter the file lacks on the meta device, with only a warning
    missing = _unloaded(pipe, components)
    if missing is not None:
        raise ParityInputError(f"diffusers' from_single_file left tensors unloaded: {missing}", path=source.path)
    pipe.set_progress_bar_config(disable=True)
    return pipe
