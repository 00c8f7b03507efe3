"""Fuzzing the LoRA reader: whatever the bytes or keys, it returns or raises ParityInputError, nothing else.

Two properties: random safetensors containers (header length, JSON header, data) through
``load_tensors``, and random LoRA-ish key sets with random small tensors through ``read_lora``
against the tiny sd15 model. Derandomized, so CI explores the same examples every run; a crash
it finds is a bug in parity/lora/reader.py, and the bad-input matrix (tests/test_bad_input.py) is
where its case then goes. A negative control shows the property does catch a crashing reader.
"""

from __future__ import annotations

import functools
import json
import math
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from parity.errors import ParityInputError
from parity.lora.layouts import METADATA_KEY
from parity.lora.reader import read_lora
from parity.lora.tensors import load_tensors
from parity.modules import lora_capable_modules
from parity.zoo import build_pipeline, get_family

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@functools.cache
def sd15() -> dict:
    family = get_family("sd15")
    return family.components(build_pipeline(family))


@functools.cache
def module_shapes(component: str) -> dict[str, tuple[int, ...]]:
    """Module name inside ``component`` of the tiny sd15 → its weight shape."""
    return {name: tuple(m.weight.shape) for name, m in lora_capable_modules(sd15()[component]).items()}


def never_crashes(read: Callable[[Path], object], path: Path) -> None:
    """The property: ``read`` returns, or refuses with ParityInputError; any other exception escapes."""
    try:
        read(path)
    except ParityInputError as exc:
        assert str(path) in str(exc)  # every refusal names the file


def _often(common: st.SearchStrategy, rare: st.SearchStrategy) -> st.SearchStrategy:
    """``common`` about four times in five (hypothesis favours small draws, so ``rare`` is the large one)."""
    return st.integers(0, 4).flatmap(lambda i: rare if i == 4 else common)


# ---------------------------------------------------------------- (a) random safetensors containers

SAFETENSORS_DTYPES = ["F32", "F16", "BF16", "F64", "I8", "U8", "I64", "BOOL", "F8_E4M3", "F8_E5M2", "C64", "F4",
                      "U16", "Q7", "f32", ""]
small_int = st.integers(0, 64) | st.sampled_from([2**32, 2**63 - 1, 2**64 - 1])
json_scalar = st.none() | st.booleans() | st.integers(-3, 2**64) | st.floats() | st.text(max_size=6)
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
tensor_entry = st.fixed_dictionaries(
    {"dtype": st.sampled_from(SAFETENSORS_DTYPES) | json_scalar,
     "shape": st.lists(small_int, max_size=3) | json_value,
     "data_offsets": st.lists(small_int, min_size=2, max_size=2) | st.lists(small_int, max_size=3) | json_value},
    optional={"extra": json_value},
)
header_json = st.dictionaries(
    st.text(max_size=8) | st.just("__metadata__"),
    tensor_entry | st.dictionaries(st.text(max_size=5), st.text(max_size=5) | json_value, max_size=3) | json_value,
    max_size=4,
)


ITEM_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I8": 1, "U8": 1, "I64": 8, "BOOL": 1, "F8_E4M3": 1,
              "C64": 8}


@st.composite
def wellformed_header(draw: st.DrawFn) -> tuple[dict, int]:
    """A header whose offsets tile the data exactly (so the reader gets past the container), and the
    data length; sometimes with one field nudged off."""
    header: dict = {}
    offset = 0
    for name in draw(st.lists(st.text(max_size=6), max_size=3, unique=True)):
        dtype = draw(st.sampled_from(sorted(ITEM_SIZES)))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        size = ITEM_SIZES[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))
    if header and draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(sorted(header)))
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        header[name] = {**header[name], field: draw(json_value)}
    return header, offset


@st.composite
def safetensors_bytes(draw: st.DrawFn) -> bytes:
    header_value, data_size = draw(_often(wellformed_header(), header_json.map(lambda h: (h, 0))))
    header = draw(_often(st.just(json.dumps(header_value).encode()), st.binary(max_size=64)))
    data = draw(_often(st.binary(min_size=data_size, max_size=data_size), st.binary(max_size=128)))
    wrong_length = st.integers(0, 2**64 - 1) | st.integers(len(header) - 4, len(header) + 4)
    length = draw(_often(st.just(len(header)), wrong_length))
    return struct.pack("<Q", max(length, 0)) + header + data


def fuzz_containers(read: Callable[[Path], object], folder: Path, config: settings = FUZZ) -> Callable[[], None]:
    @config
    @given(content=safetensors_bytes())
    def prop(content: bytes) -> None:
        path = folder / "fuzz.safetensors"
        path.write_bytes(content)
        never_crashes(read, path)

    return prop


# ---------------------------------------------------------------- (b) random LoRA key sets

# Mostly well-formed, with one defect at a time now and then: a file with a defect in every stem
# stops at the first one, and the checks behind it (shapes, dtypes, alpha, metadata) go unexercised.
PREFIXES = {  # prefix → the sd15 component it addresses
    0: [("unet.", "unet"), ("text_encoder.", "text_encoder"), ("text_encoder.text_model.", "text_encoder")],
    1: [("lora_unet_", "unet"), ("lora_te_", "text_encoder")],  # lora_down/lora_up
}
ODD_PREFIXES = ["text_encoder_2.", "transformer.", "diffusion_model.", "lora_te1_", "lora_te2_", "lora_transformer_",
                "", "unet", "lora_unet"]
SUFFIXES = {
    "down": [".lora_A.weight", ".lora_down.weight"],
    "up": [".lora_B.weight", ".lora_up.weight"],
    "alpha": [".alpha"],
    "junk": ["", ".weight", ".lora_A", ".lora_mid.weight", ".dora_scale"],
}
PART_SETS = [("down", "up")] * 5 + [("alpha", "down", "up")] * 3 + [("down",), ("up",), ("alpha",),
                                                                   ("down", "junk", "up")]
ODD_DTYPES = [torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int64, torch.uint8, torch.bool,
              torch.float8_e4m3fn, torch.complex64]
FILLS = [0.5] * 6 + [0.0, -2.0, math.nan, math.inf]
junk_text = st.text(alphabet="abtoq_.019", max_size=14)


def _fitting_shape(part: str, weight: tuple[int, ...] | None, rank: int) -> tuple[int, ...] | None:
    if weight is None:
        return None
    kernel = weight[2:]
    if part == "down":
        return (rank, weight[1], *kernel)
    if part == "up":
        return (weight[0], rank, *(1,) * len(kernel))
    return ()


@st.composite
def lora_tensor(draw: st.DrawFn, part: str, weight: tuple[int, ...] | None, rank: int) -> torch.Tensor:
    fitting = _fitting_shape(part, weight, rank)
    random_shape = st.lists(st.integers(0, 5), max_size=4).map(tuple)
    shape = draw(random_shape if fitting is None else _often(st.just(fitting), random_shape))
    fill = draw(st.sampled_from(FILLS))
    dtype = draw(_often(st.just(torch.float32), st.sampled_from(ODD_DTYPES)))
    return torch.full(shape, fill).to(dtype)


@st.composite
def lora_entries(draw: st.DrawFn) -> dict[str, torch.Tensor]:
    """One stem (prefix + module) with its down/up (and maybe alpha) tensors, sometimes with a defect."""
    layout = draw(st.integers(0, 1))  # 0: lora_A/lora_B, 1: lora_down/lora_up
    prefix, component = draw(_often(st.sampled_from(PREFIXES[layout]),
                                    (st.sampled_from(ODD_PREFIXES) | junk_text).map(lambda p: (p, "unet"))))
    module = draw(_often(st.sampled_from(sorted(module_shapes(component))), junk_text))
    name = module.replace(".", "_") if prefix.startswith("lora_") else module
    rank = draw(_often(st.integers(1, 3), st.just(0)))
    weight = module_shapes(component).get(module)
    out = {}
    for part in draw(st.sampled_from(PART_SETS)):
        options = SUFFIXES[part]
        suffix = options[layout] if part in ("down", "up") else draw(st.sampled_from(options))
        out[prefix + name + suffix] = draw(lora_tensor(part, weight, rank))
    return out


regex_text = st.text(alphabet="to_q().*[]\\?+{}1|", max_size=8)
component_config = st.fixed_dictionaries(
    {},
    optional={
        "lora_alpha": json_scalar,
        "alpha_pattern": st.dictionaries(regex_text, json_scalar, max_size=2) | json_value,
        "r": json_scalar,
    },
)
adapter_metadata = _often(
    st.dictionaries(st.sampled_from(["unet", "text_encoder", "x"]), component_config, max_size=2).map(
        lambda per: json.dumps({f"{c}.{k}": v for c, cfg in per.items() for k, v in cfg.items()})),
    json_value.map(json.dumps) | st.text(max_size=10),
)


@st.composite
def lora_files(draw: st.DrawFn) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    tensors: dict[str, torch.Tensor] = {}
    for entry in draw(st.lists(lora_entries(), min_size=1, max_size=3)):
        tensors.update(entry)
    metadata = draw(st.none() | adapter_metadata.map(lambda text: {METADATA_KEY: text}))
    return tensors, metadata


def fuzz_keys(read: Callable[[Path], object], folder: Path, config: settings = FUZZ) -> Callable[[], None]:
    @config
    @given(file=lora_files())
    def prop(file: tuple[dict[str, torch.Tensor], dict[str, str] | None]) -> None:
        tensors, metadata = file
        path = folder / "fuzz_lora.safetensors"
        save_file(tensors, str(path), metadata=metadata)
        never_crashes(read, path)

    return prop


# ---------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reader_fuzz")


def test_load_tensors_returns_or_raises_parity_input_error_on_random_containers(folder):
    fuzz_containers(load_tensors, folder)()


def test_read_lora_returns_or_raises_parity_input_error_on_random_keys_and_tensors(folder):
    fuzz_keys(lambda path: read_lora(path, sd15()), folder)()


def test_read_lora_lenient_returns_or_raises_parity_input_error_on_random_keys_and_tensors(folder):
    fuzz_keys(lambda path: read_lora(path, sd15(), strict=False), folder)()


def _crashes_on_dotless_keys(path: Path) -> object:
    """A reader with the bug the hardening removed: indexes past the end of a name without dots."""
    tensors, _ = load_tensors(path)
    for key in tensors:
        key.split(".")[3]
    return tensors


def _crashes_on_short_headers(path: Path) -> object:
    if path.stat().st_size < 16:
        raise IndexError("header shorter than the reader assumed")
    return None


@pytest.mark.parametrize(
    ("fuzz", "reader"),
    [(fuzz_containers, _crashes_on_short_headers), (fuzz_keys, _crashes_on_dotless_keys)],
    ids=["containers", "keys"],
)
def test_negative_control_the_fuzz_property_reports_a_crashing_reader(folder, fuzz, reader):
    # No shrinking: the control asks only whether the crash is reported, not for the smallest example.
    with pytest.raises(IndexError):
        fuzz(reader, folder, settings(FUZZ, phases=[Phase.generate]))()
