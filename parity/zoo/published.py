"""The published architecture of a family, from its published configs with deterministic weights: what a
real LoRA file is checked against when no ``--model-path`` is given.

A real SD1.5, SDXL, FLUX.1, Qwen-Image, Wan, Z-Image or FLUX.2 LoRA does not fit the tiny zoo (its factors
are hundreds to thousands wide). When a file is wider than anything in the tiny model, the LoRA-capable components are
built at their published shapes (parity/zoo/fullsize.py; the text encoders here) and the rest of the
tiny pipeline is sized to fit them, so any real file can be verified with no download. The result is
saved once as an ordinary diffusers folder in the cache (LORA_PARITY_CACHE, default
~/.cache/lora-parity): every later run loads it like a user's folder, with the same bounded memory
(base weights read back from its safetensors, parity/zoo/checkpoint.py), and never pays the build twice.
Where the whole architecture would not fit in memory, parity/zoo/route.py builds it with only the
transformer blocks the files target (``blocks``/``single`` here).

A family may have several published models (``VARIANTS``): Wan is Wan 2.2 T2V A14B (two 14 B experts, the
tiny model's shape), Wan 2.1 T2V 14B (one expert) or Wan 2.1 T2V 1.3B (one, narrower). ``lora-parity model
--published NAME`` picks one; a file checked without a folder is read against each in turn and goes to the
first whose shapes it fits (a 14 B-wide file to Wan 2.2 A14B, so either expert can take it). Z-Image is
Z-Image-Turbo or Z-Image, one architecture under two names; FLUX.2 [klein] is 4B or 9B; FLUX.2 [dev] (32 B)
is one, always reduced to the blocks a file targets (parity/zoo/published_flux2.py: its encoders and VAE).

The weights are synthetic: a check on them proves diffusers merges the file's deltas correctly into
weights of these shapes, not anything about the image a real checkpoint would make.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from parity.checks.memory import BASELINE, GIB, available_memory
from parity.errors import ParityInputError
from parity.lora.neutral import LoraFile
from parity.lora.tensors import tensor_shapes
from parity.modules import lora_capable_modules
from parity.versions import library_versions
import parity.zoo.fullsize as fullsize
import parity.zoo.published_flux2 as published_flux2
from parity.zoo.family import Family
from parity.zoo.weights import fill_deterministic

CACHE_ENV = "LORA_PARITY_CACHE"
SEED = 0


def _clip_text(hidden: int, layers: int, heads: int, intermediate: int, act: str, projection: bool) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from parity.zoo.tokenizer import tiny_vocab

    vocab = tiny_vocab()  # the folder ships the tiny tokenizer: its special ids, the published vocabulary size
    config = CLIPTextConfig(
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
        hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=heads, num_hidden_layers=layers,
        hidden_act=act, vocab_size=49408, projection_dim=hidden, max_position_embeddings=77,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def clip_l() -> nn.Module:
    # openai/clip-vit-large-patch14's text tower: SD1.5's, SDXL's first and FLUX.1's CLIP text encoder
    return _clip_text(768, 12, 12, 3072, "quick_gelu", projection=False)


def open_clip_h() -> nn.Module:
    # laion/CLIP-ViT-H-14's text tower as stabilityai/stable-diffusion-2-1 text_encoder/config.json holds it:
    # 23 of its 24 layers (SD 2.x reads the penultimate layer's output), gelu
    return _clip_text(1024, 23, 16, 4096, "gelu", projection=False)


def clip_bigg() -> nn.Module:
    # laion/CLIP-ViT-bigG-14's text tower: SDXL's text_encoder_2
    return _clip_text(1280, 32, 20, 5120, "gelu", projection=True)


def _flux_t5() -> nn.Module:
    # Not LoRA-capable: only its width must be FLUX.1's joint_attention_dim (T5-XXL's d_model).
    from parity.zoo.flux import tiny_t5
    from parity.zoo.tokenizer import tiny_t5_tokenizer

    model = tiny_t5(len(tiny_t5_tokenizer()))
    config = model.config
    config.d_model = 4096
    return type(model)(config)


def _flux_vae() -> nn.Module:
    from diffusers import AutoencoderKL

    from parity.zoo.flux import tiny_flux_vae

    return AutoencoderKL.from_config({**tiny_flux_vae().config, "latent_channels": 16})


def _qwen_vl_text() -> nn.Module:
    # Not LoRA-capable: one layer at Qwen2.5-VL-7B's width, which the transformer's joint_attention_dim is.
    from parity.zoo.qwen_vl import PUBLISHED_TEXT, tiny_qwen2_tokenizer, tiny_text_encoder

    return tiny_text_encoder(tiny_qwen2_tokenizer(), PUBLISHED_TEXT)


def _qwen_vae() -> nn.Module:
    from diffusers import AutoencoderKLQwenImage

    from parity.zoo.qwenimage import tiny_vae

    return AutoencoderKLQwenImage.from_config(
        {**tiny_vae().config, "z_dim": 16, "latents_mean": [0.0] * 16, "latents_std": [1.0] * 16})


def _wan_vae() -> nn.Module:
    # Not LoRA-capable: the tiny VAE at Wan 2.1's latent channels (z_dim 16, the transformers' in_channels),
    # identity latent normalisation as the tiny one has
    from diffusers import AutoencoderKLWan

    from parity.zoo.wan import tiny_vae

    return AutoencoderKLWan.from_config(
        {**tiny_vae().config, "z_dim": 16, "latents_mean": [0.0] * 16, "latents_std": [1.0] * 16})


def _umt5_xxl_layer() -> nn.Module:
    # Not LoRA-capable (diffusers loads no LoRA into Wan's text encoder): one layer of google/umt5-xxl's
    # encoder at its published widths (d_model 4096, the transformers' text_dim; 64 heads of 64; gated-gelu
    # d_ff 10240; 32 relative buckets up to 128), over the tiny tokenizer's vocabulary. 0.19 B parameters:
    # a real Wan folder's UMT5 (5.7 B) counts in the memory prediction the same way, as a model it holds.
    from transformers import UMT5Config, UMT5EncoderModel

    from parity.zoo.tokenizer import tiny_t5_tokenizer
    from parity.zoo.wan import tiny_umt5

    config = tiny_umt5(len(tiny_t5_tokenizer())).config.to_dict()
    config.update(d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=1, relative_attention_num_buckets=32,
                  relative_attention_max_distance=128)
    return UMT5EncoderModel(UMT5Config(**config))


def qwen3_layer(hidden: int, intermediate: int, heads: int, kv_heads: int) -> nn.Module:
    """Not LoRA-capable (diffusers loads no LoRA into a Qwen3 encoder): one layer of a Qwen3 base model at
    its published widths (head_dim 128, RMSNorm eps 1e-6, rope_theta 1e6), over the tiny chat tokenizer's
    vocabulary. The pipelines read the second-to-last hidden state, the embeddings with one layer: only
    the width has to fit the transformer. Its parameters count in the memory prediction as a real
    encoder's do, as a model the folder holds."""
    from transformers import Qwen3Config, Qwen3Model

    from parity.zoo.tokenizer import tiny_qwen_tokenizer

    return Qwen3Model(Qwen3Config(
        vocab_size=len(tiny_qwen_tokenizer()), hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=1, num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=128,
        rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=40960, tie_word_embeddings=True,
    ))


def _qwen3_4b_layer() -> nn.Module:
    # Qwen/Qwen3-4B (Z-Image's text_encoder/config.json): hidden 2560 (Z-Image's cap_feat_dim), 9728-wide
    # MLP, 32 query heads over 8 KV heads, 36 layers as published
    return qwen3_layer(2560, 9728, 32, 8)


# transformer blocks (None: as published), and for FLUX.1 its single-stream blocks (None: twice as many) → module
Builder = Callable[..., nn.Module]


def _fixed(build: Callable[[], nn.Module]) -> Builder:
    return lambda blocks, single=None: build()


def _build(build: Builder, blocks: int | None, single: int | None = None) -> nn.Module:
    return build(blocks) if single is None else build(blocks, single)


# family → component → builder. The LoRA-capable components at their published shapes first, then the
# parts of the tiny pipeline that must be resized to fit them (parity/zoo/fit.py). A transformer may be
# built with fewer blocks than published, at full width: memory and time are linear in blocks, so a
# 12-20 B model can be measured on a machine that cannot hold it.
PUBLISHED: dict[str, dict[str, Builder]] = {
    "sd15": {"unet": _fixed(fullsize.sd15_unet), "text_encoder": _fixed(clip_l)},
    "sd2": {"unet": _fixed(fullsize.sd2_unet), "text_encoder": _fixed(open_clip_h)},
    "sdxl": {"unet": _fixed(fullsize.sdxl_unet), "text_encoder": _fixed(clip_l), "text_encoder_2": _fixed(clip_bigg)},
    "flux": {"transformer": fullsize.flux_transformer, "text_encoder": _fixed(clip_l),
             "text_encoder_2": _fixed(_flux_t5), "vae": _fixed(_flux_vae)},
    "qwenimage": {"transformer": fullsize.qwenimage_transformer, "vae": _fixed(_qwen_vae)},
    "qwenimage-edit": {"transformer": fullsize.qwenimage_transformer, "vae": _fixed(_qwen_vae),
                       "text_encoder": _fixed(_qwen_vl_text)},
}
PUBLISHED_BLOCKS = {"flux": fullsize.FLUX_DOUBLE, "qwenimage": fullsize.QWEN_LAYERS,
                    "qwenimage-edit": fullsize.QWEN_LAYERS}


@dataclass(frozen=True)
class Variant:
    """One of a family's published models, where it has several: its LoRA-capable components and the parts
    resized to fit them, its depth, and how its pipeline differs from the tiny one."""

    name: str  # what --published takes
    title: str
    builders: dict[str, Builder]
    blocks: int  # transformer blocks as published
    # pipeline components the published model lacks (Wan 2.1: transformer_2), and its pipeline config
    # (Wan 2.1: no boundary_ratio)
    absent: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    single: int | None = None  # single-stream blocks as published, for a two-list transformer (FLUX.2)
    # component → what to set after the deterministic fill, (module, seed, namespace) (FLUX.2's VAE variance)
    filled: Mapping[str, Callable[[nn.Module, int, str], None]] = field(default_factory=dict)


_WAN_PARTS: dict[str, Builder] = {"text_encoder": _fixed(_umt5_xxl_layer), "vae": _fixed(_wan_vae)}


def _flux2(name: str, label: str, transformer: Builder, encoder: Callable[[], nn.Module],
           depth: tuple[int, int]) -> Variant:
    """A FLUX.2 model: its transformer at (double, single) blocks, its encoder, the shared VAE, whose
    BatchNorm variance is drawn positive after the fill (the pipeline takes its square root)."""
    return Variant(name, label, {"transformer": transformer, "text_encoder": _fixed(encoder),
                                 "vae": _fixed(published_flux2.flux2_vae)},
                   depth[0], single=depth[1], filled={"vae": published_flux2.positive_variance})


_ZIMAGE_PARTS: dict[str, Builder] = {"transformer": fullsize.zimage_transformer,
                                      "text_encoder": _fixed(_qwen3_4b_layer), "vae": _fixed(_flux_vae)}
# family → its published models, the default first: the one the tiny model has the shape of
VARIANTS: dict[str, tuple[Variant, ...]] = {
    "wan": (
        # Wan-AI/Wan2.2-T2V-A14B-Diffusers: two experts of Wan 2.1 14B's config, boundary_ratio 0.875
        Variant("wan2.2-t2v-a14b", "Wan 2.2 T2V A14B",
                {"transformer": fullsize.wan_14b_transformer, "transformer_2": fullsize.wan_14b_transformer,
                 **_WAN_PARTS}, fullsize.WAN_LAYERS),
        Variant("wan2.1-t2v-14b", "Wan 2.1 T2V 14B", {"transformer": fullsize.wan_14b_transformer, **_WAN_PARTS},
                fullsize.WAN_LAYERS, absent=("transformer_2",), config={"boundary_ratio": None}),
        Variant("wan2.1-t2v-1.3b", "Wan 2.1 T2V 1.3B", {"transformer": fullsize.wan_1_3b_transformer, **_WAN_PARTS},
                fullsize.WAN_1_3B_LAYERS, absent=("transformer_2",), config={"boundary_ratio": None}),
    ),
    # Tongyi-MAI/Z-Image-Turbo and Tongyi-MAI/Z-Image (base): one transformer config (transformer/config.json,
    # 6.15 B parameters), Qwen3-4B, FLUX.1's 16-channel VAE. Their shapes are the same, so a file is read
    # against the first; --published z-image only names the folder after the base model
    "zimage": (
        Variant("z-image-turbo", "Z-Image-Turbo", _ZIMAGE_PARTS, fullsize.ZIMAGE_LAYERS),
        Variant("z-image", "Z-Image", _ZIMAGE_PARTS, fullsize.ZIMAGE_LAYERS),
    ),
    # black-forest-labs/FLUX.2-dev: 32 B, larger than any machine here holds in any dtype, so a check without
    # --model-path keeps only the blocks a file targets (parity/zoo/route.py)
    "flux2": (_flux2("flux.2-dev", "FLUX.2 [dev]", fullsize.flux2_dev_transformer, published_flux2.mistral_small_3_1,
                     fullsize.FLUX2_DEV_DEPTH),),
    # black-forest-labs/FLUX.2-klein-4B and -9B (their -base- models have the same configs); a file is read
    # against 4B first, and goes to 9B where its shapes fit that one
    "flux2-klein": (
        _flux2("flux.2-klein-4b", "FLUX.2 [klein] 4B", fullsize.flux2_klein_4b_transformer, published_flux2.qwen3_4b,
               fullsize.FLUX2_KLEIN_4B_DEPTH),
        _flux2("flux.2-klein-9b", "FLUX.2 [klein] 9B", fullsize.flux2_klein_9b_transformer, published_flux2.qwen3_8b,
               fullsize.FLUX2_KLEIN_9B_DEPTH),
    ),
}
for _family, _variants in VARIANTS.items():
    PUBLISHED[_family] = _variants[0].builders
    PUBLISHED_BLOCKS[_family] = _variants[0].blocks


def variant_of(family: str, name: str | None = None) -> Variant | None:
    """The published model ``name`` of ``family`` (None: its default), None for a family of one."""
    choices = VARIANTS.get(family, ())
    if name is None or name == "":
        return choices[0] if choices else None
    for variant in choices:
        if variant.name == name:
            return variant
    have = ", ".join(v.name for v in choices) if choices else "only its one published architecture"
    raise ParityInputError(f"--published {name}: {family} has {have}")


def builders_of(family: str, variant: str | None = None) -> dict[str, Builder]:
    chosen = variant_of(family, variant)
    return dict(chosen.builders) if chosen is not None else PUBLISHED[family]


def depth_of(family: str, variant: str | None = None) -> int | None:
    """Transformer blocks as published (None: a UNet's)."""
    chosen = variant_of(family, variant)
    return chosen.blocks if chosen is not None else PUBLISHED_BLOCKS.get(family)


@contextlib.contextmanager
def _no_init() -> Iterator[None]:
    """Skip torch's default initialisation while a model is constructed: every floating tensor is
    overwritten by fill_deterministic right after, and initialising 2.6 B parameters first costs 40 s."""
    names = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
             "xavier_normal_", "constant_", "zeros_", "ones_", "orthogonal_")
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for n in names:
            setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(nn.init, n, fn)


def meta_components(family: Family, blocks: int | None = None, single: int | None = None,
                    variant: str | None = None) -> dict[str, nn.Module]:
    """The LoRA-capable components at their published shapes on the meta device: no memory, for
    reading files and predicting a run's memory before anything is built."""
    with torch.device("meta"):
        return {c: _build(build, blocks, single) for c, build in builders_of(family.name, variant).items()
                if c in family.lora_components}


def _widest(modules: Mapping[str, nn.Module]) -> int:
    widths = [max(w.shape) for m in modules.values() for w in [m.weight]]
    return max(widths, default=0)


def made_for_published(family: Family, paths: Sequence[str], tiny: Mapping[str, nn.Module]) -> bool:
    """Whether any file holds a tensor wider than every LoRA-capable layer of the tiny model: then it
    cannot be the tiny model's, and the published architecture is what it was made for. A file whose
    header cannot be read is left to the reader, which names what is wrong with it; so is a pickle, which
    has no header and is loaded only once (convert it to .safetensors to check it at published size)."""
    if family.name not in PUBLISHED:
        return False
    widest = max(_widest(lora_capable_modules(m)) for m in tiny.values())
    for path in paths:
        shapes = tensor_shapes(path)
        if shapes and max((max(s) for s in shapes.values() if s), default=0) > widest:
            return True
    return False


@dataclass(frozen=True)
class Published:
    """The published architecture a run uses: where its folder is (or will be) and what to call it."""

    family: str
    folder: str
    component_parameters: dict[str, int]  # of each component the folder's build replaces
    blocks: int | None = None  # transformer blocks, where fewer than published
    dtype: torch.dtype = torch.float32  # stored in: a check in bfloat16 loads a bfloat16 folder, as published
    single: int | None = None  # FLUX.1's single-stream blocks, where not twice ``blocks``
    variant: str = ""  # which published model, for a family of several (VARIANTS)

    @property
    def parameters(self) -> int:
        """Of every replaced component (the tiny rest is negligible)."""
        return sum(self.component_parameters.values())

    @property
    def bytes(self) -> int:
        """On disk: the replaced components' parameters in the stored dtype."""
        return self.parameters * self.dtype.itemsize

    def describe(self) -> str:
        chosen = variant_of(self.family, self.variant)
        title = f"{chosen.title}, " if chosen is not None else ""
        depth = f" ({title}{self.blocks} of {depth_of(self.family, self.variant)} blocks)" if self.blocks is not None \
            else f" ({chosen.title})" if chosen is not None else ""
        if chosen is not None and chosen.single is not None and self.blocks is not None:
            # FLUX.2: --blocks N alone builds the published ratio of single-stream blocks (fullsize.py)
            single = self.single if self.single is not None else chosen.single * self.blocks // chosen.blocks
            depth = f" ({title}{self.blocks} of {chosen.blocks} double and {single} of {chosen.single} single blocks)"
        elif self.single is not None:
            depth = f" ({self.blocks} of {fullsize.FLUX_DOUBLE} double and {self.single} of {fullsize.FLUX_SINGLE} " \
                    "single blocks)"
        stored = "" if self.dtype == torch.float32 else f", stored in {str(self.dtype).removeprefix('torch.')}"
        return f"published {self.family} architecture{depth}, synthetic weights (seed {SEED}{stored}; {self.folder})"


def cache_root() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "lora-parity")


def _shapes(family: str, blocks: int | None, single: int | None = None,
            variant: str | None = None) -> dict[str, dict[str, list[int]]]:
    with torch.device("meta"):
        return {c: {n: list(p.shape) for n, p in _build(build, blocks, single).state_dict().items()}
                for c, build in builders_of(family, variant).items()}


def _folder_key(family: str, shapes: dict[str, dict[str, list[int]]]) -> str:
    """The libraries that write the folder's configs and the builders' shapes; the weights themselves are a
    pure function of (seed, name, shape) (parity/zoo/weights.py)."""
    versions = {k: v for k, v in library_versions().items() if k in ("diffusers", "transformers")}
    blob = json.dumps([family, SEED, versions, shapes], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _check_blocks(family: str, blocks: int | None, variant: str | None = None) -> None:
    # 0 only from a reduced model (parity/zoo/route.py: a file that targets no block of a kind); --blocks is positive
    depth = depth_of(family, variant)
    if blocks is not None and (depth is None or not 0 <= blocks <= depth):
        have = f"1 to {depth}" if depth is not None else "none (its UNet has no blocks to drop)"
        chosen = variant_of(family, variant)
        raise ParityInputError(f"--blocks {blocks}: {chosen.title if chosen is not None else family} takes {have}")


def published(family: Family, blocks: int | None = None, folder: str | None = None,
              dtype: torch.dtype = torch.float32, single: int | None = None, variant: str | None = None) -> Published:
    """The published architecture (``blocks`` transformer blocks, None: as published; for FLUX.1
    ``single`` single-stream blocks, None: twice ``blocks``), stored in ``dtype`` (the deterministic
    float32 values rounded to it), in ``folder`` or the cache. A reduced model (parity/zoo/route.py)
    may hold no block of a kind: 0. ``variant``: which of the family's published models (VARIANTS; None:
    its default).

    A bfloat16 run on a float32 folder would hold the mapped float32 file beside the model it builds
    while diffusers loads it: 1.5 times the model at most, however little the check itself holds."""
    chosen = variant_of(family.name, variant)
    name = chosen.name if chosen is not None else ""
    _check_blocks(family.name, blocks, name)
    shapes = _shapes(family.name, blocks, single, name)
    parameters = {c: sum(math.prod(shape) for shape in part.values()) for c, part in shapes.items()}
    if folder is None:
        depth = "" if blocks is None else f"-{blocks}blocks" if single is None else f"-{blocks}+{single}blocks"
        stored = "" if dtype == torch.float32 else f"-{str(dtype).removeprefix('torch.')}"
        key = _folder_key(family.name, shapes)
        folder = os.path.join(cache_root(), "published", f"{family.name}{'-' + name if name else ''}{depth}{stored}-{key}")
    return Published(family.name, folder, parameters, blocks, dtype, single, name)


def read_against_published(components: Mapping[str, nn.Module], paths: Sequence[str],
                           allow_pickle: bool) -> list[LoraFile]:
    """The files read against the published shapes (``meta_components``): a bad key or shape is named
    against them."""
    from parity.lora.reader import read_lora

    return [read_lora(path, components, strict=True, allow_pickle=allow_pickle) for path in paths]


def ensure_folder(family: Family, model: Published, note: Callable[[str], None] = lambda _: None) -> str:
    """The published folder, built once: the tiny pipeline saved, then each published component built,
    filled, saved over its tiny one and freed, so only one is in memory at a time. Built beside its
    final name and renamed into place, so a killed build leaves no half folder."""
    if os.path.isfile(os.path.join(model.folder, "model_index.json")):
        return model.folder
    if os.path.exists(model.folder) and os.listdir(model.folder):
        raise ParityInputError("exists and is not a pipeline folder; give a new or empty one", path=model.folder)
    parent = os.path.dirname(os.path.abspath(model.folder))
    os.makedirs(parent, exist_ok=True)
    need = model.bytes
    free = shutil.disk_usage(parent).free
    if free < need * 1.05:
        raise ParityInputError(f"too little disk to build the published {model.family} architecture: it needs "
                               f"{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB are free (set {CACHE_ENV} to "
                               "another folder)", path=parent)
    # one component at a time, built in float32 (and its cast, where stored in another dtype)
    per_parameter = 4 + (0 if model.dtype == torch.float32 else model.dtype.itemsize)
    build_peak = BASELINE + per_parameter * max(model.component_parameters.values())
    available = available_memory()
    if available is not None and build_peak > available:
        raise ParityInputError(f"too little memory to build the published {model.family} architecture: its "
                               f"largest component needs {build_peak / GIB:.1f} GiB, {available / GIB:.1f} GiB "
                               "are available", path=model.folder)
    note(f"building the published {model.family} architecture once ({model.parameters / 1e9:.2f} B parameters, "
         f"{need / 2**30:.1f} GiB) into {model.folder}")
    from parity.zoo.registry import get_family

    chosen = variant_of(family.name, model.variant)
    staging = tempfile.mkdtemp(prefix=".building-", dir=parent)
    try:
        tiny = get_family(family.name).build_tiny(SEED).to(dtype=model.dtype)
        if chosen is not None:  # the published pipeline's own parts and config (Wan 2.1: one transformer)
            tiny.register_modules(**{c: None for c in chosen.absent})
            tiny.register_to_config(**chosen.config)
        tiny.save_pretrained(staging)
        del tiny
        for component, build in builders_of(family.name, model.variant).items():
            with _no_init():
                module = _build(build, model.blocks, model.single)
            fill_deterministic(module, SEED, f"{family.name}/published/{component}")
            if chosen is not None and component in chosen.filled:
                with torch.no_grad():
                    chosen.filled[component](module, SEED, f"{family.name}/published/{component}")
            module = module.to(model.dtype)
            shutil.rmtree(os.path.join(staging, component), ignore_errors=True)
            module.save_pretrained(os.path.join(staging, component))
            note(f"  {component}: {sum(p.numel() for p in module.parameters()) / 1e9:.2f} B parameters saved")
            del module
        if os.path.isdir(model.folder) and not os.listdir(model.folder):
            os.rmdir(model.folder)
        try:
            os.rename(staging, model.folder)
        except OSError:  # another run finished the same folder first: it is identical
            if not os.path.isfile(os.path.join(model.folder, "model_index.json")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model.folder
