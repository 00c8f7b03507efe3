"""The bad-input matrix: every malformed file or option is one ParityInputError naming the file and key.

Each case is declared once, as data: how to write the bad input next to a good synthesised LoRA,
the message fragment it must produce, and the key the message must name. Two generic checks run
over every case: the library raises ParityInputError naming file and key; ``lora-parity check``
exits 2 with exactly that one line on stderr; and each holds that reading leaves the file (and its
folder) as it was, no pickle executed.
"""

from __future__ import annotations

import json
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from parity.cli import main
from parity.errors import ParityInputError
from parity.lora.layouts import METADATA_KEY, save_lora
from parity.lora.reader import read_lora
from parity.tolerances import dtype_from_name
from parity.zoo import get_family
from parity.zoo.family import pretrained_dir
from tests.support.badfiles import (
    DIFFUSERS_STEM,
    KOHYA_STEM,
    MARKER,
    MODULE,
    TE_MODULE,
    Good,
    Writer,
    good_files,
    malicious_pickle,
    plain_pickle,
)
from tests.support.filesnap import differences, snapshot


@dataclass(frozen=True)
class BadInput:
    id: str
    write: Writer  # writes the bad input into the folder, returns the path given as --lora
    message: str  # fragment the error message must contain
    key: str | None = None  # the key the message must name, where there is one
    # A bad option rather than a bad file: the CLI options, and the library call the CLI makes for it.
    options: Callable[[Path], list[str]] | None = None
    library: Callable[[Good, Path], object] | None = None

    @property
    def names_file(self) -> bool:
        return self.options is None


# ---------------------------------------------------------------- writers


def _save(d: Path, name: str, sd: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    save_file(sd, str(d / name), metadata=metadata)
    return d / name


def _edited(layout: str, edit: Callable[[dict[str, torch.Tensor]], None], name: str = "bad.safetensors") -> Writer:
    """The good LoRA in ``layout`` with ``edit`` applied to its state dict (metadata kept)."""
    def write(good: Good, d: Path) -> Path:
        sd, metadata = good.state_dict(layout)
        edit(sd)
        return _save(d, name, sd, metadata)

    return write


def _metadata(edit: Callable[[dict], object]) -> Writer:
    """The good diffusers-layout LoRA with its lora_adapter_metadata JSON replaced by edit(parsed)."""
    def write(good: Good, d: Path) -> Path:
        sd, metadata = good.state_dict("diffusers")
        assert metadata is not None
        metadata[METADATA_KEY] = json.dumps(edit(json.loads(metadata[METADATA_KEY])))
        return _save(d, "bad.safetensors", sd, metadata)

    return write


def _metadata_text(text: str) -> Writer:
    def write(good: Good, d: Path) -> Path:
        sd, metadata = good.state_dict("diffusers")
        return _save(d, "bad.safetensors", sd, {**(metadata or {}), METADATA_KEY: text})

    return write


def _bytes(content: bytes | Callable[[Good, Path], bytes], name: str = "bad.safetensors") -> Writer:
    def write(good: Good, d: Path) -> Path:
        (d / name).write_bytes(content(good, d) if callable(content) else content)
        return d / name

    return write


def _raw_header(header: dict | bytes, data: bytes, length: int | None = None) -> bytes:
    """A safetensors container by hand: 8-byte little-endian header length, JSON header, data."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _f32(offsets: list[int], shape: list[int] | None = None) -> dict:
    return {"dtype": "F32", "shape": shape or [(offsets[1] - offsets[0]) // 4], "data_offsets": offsets}


def _good_bytes(good: Good, d: Path) -> bytes:
    save_lora(good.lora, d / "good.tmp", "diffusers")
    data = (d / "good.tmp").read_bytes()
    (d / "good.tmp").unlink()
    return data


def _other_family(attr: str) -> Writer:
    def write(good: Good, d: Path) -> Path:
        return Path(save_lora(getattr(good, attr), d / f"{attr}_lora.safetensors", "diffusers"))

    return write


def _directory(good: Good, d: Path) -> Path:
    (d / "a_folder.safetensors").mkdir()
    return d / "a_folder.safetensors"


def _good_file(good: Good, d: Path) -> Path:
    return Path(save_lora(good.lora, d / "good.safetensors", "diffusers"))


def _set(key: str, value: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> Callable[[dict], None]:
    return lambda sd: sd.__setitem__(key, value(sd))


def _drop(key: str) -> Callable[[dict], None]:
    return lambda sd: sd.pop(key)


def _poke(key: str, value: float) -> Callable[[dict], None]:
    def edit(sd: dict) -> None:
        sd[key].view(-1)[0] = value

    return edit


A, B = f"{DIFFUSERS_STEM}.lora_A.weight", f"{DIFFUSERS_STEM}.lora_B.weight"
DOWN, UP, ALPHA = f"{KOHYA_STEM}.lora_down.weight", f"{KOHYA_STEM}.lora_up.weight", f"{KOHYA_STEM}.alpha"
NO_MODULE = "unet.down_blocks.1.attentions.0.proj_inn"


def _only_pair(stem: str) -> Writer:
    # Nothing else in the file: with some keys matching, the CLI (lenient) reports the rest and runs.
    def write(good: Good, d: Path) -> Path:
        return _save(d, "other_model.safetensors",
                     {f"{stem}.lora_A.weight": torch.zeros(4, 16), f"{stem}.lora_B.weight": torch.zeros(16, 4)})

    return write


def _rename_all(old: str, new: str) -> Callable[[dict], None]:
    def edit(sd: dict) -> None:
        for key in list(sd):
            sd[key.replace(old, new)] = sd.pop(key)

    return edit


def _same_module_twice(sd: dict) -> None:
    # transformers 5 dropped CLIP's text_model. level; both spellings name the same module.
    for part in ("lora_A", "lora_B"):
        sd[f"text_encoder.text_model.{TE_MODULE}.{part}.weight"] = sd[f"text_encoder.{TE_MODULE}.{part}.weight"].clone()


# ---------------------------------------------------------------- the matrix

CASES = [
    # -- not a readable safetensors container
    BadInput("truncated", _bytes(lambda g, d: _good_bytes(g, d)[:300]), "not a readable safetensors file"),
    BadInput("truncated_in_the_data", _bytes(lambda g, d: _good_bytes(g, d)[:-100]), "not a readable safetensors file"),
    BadInput("offsets_beyond_the_file", _bytes(_raw_header({"t": _f32([0, 800], shape=[2])}, bytes(8))),
             "invalid shape, data type, or offset"),
    BadInput("offsets_overlapping", _bytes(_raw_header({"a": _f32([0, 8]), "b": _f32([4, 12])}, bytes(12))),
             "invalid offset for tensor `b`"),
    BadInput("offsets_not_covering_the_buffer", _bytes(_raw_header({"t": _f32([0, 8])}, bytes(16))),
             "not fully covered"),
    BadInput("header_length_beyond_the_file", _bytes(_raw_header({"t": _f32([0, 8])}, bytes(8), length=10_000)),
             "invalid header length"),
    BadInput("header_length_huge", _bytes(_raw_header({"t": _f32([0, 8])}, bytes(8), length=2**63)),
             "header too large"),
    BadInput("header_not_json", _bytes(_raw_header(b"{not json", b"")), "not a readable safetensors file"),
    BadInput("unknown_safetensors_dtype",
             _bytes(_raw_header({"t": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, bytes(8))),
             "unknown variant `Q7`"),
    BadInput("random_bytes", _bytes(random.Random(0).randbytes(256)), "not a readable safetensors file"),
    BadInput("zero_bytes", _bytes(bytes(64)), "not a readable safetensors file"),
    BadInput("text_file", _bytes(b"# my LoRA\ntrained for 10 epochs\n", name="notes.safetensors"),
             "not a readable safetensors file"),
    BadInput("empty_file", _bytes(b""), "file is empty"),
    BadInput("directory", _directory, "is a directory"),
    BadInput("missing_file", lambda g, d: d / "absent.safetensors", "no such file"),
    BadInput("no_tensors", _bytes(_raw_header({"__metadata__": {"format": "pt"}}, b"")), "holds no tensors"),
    # -- pickles: refused unread; the refusal names the opt-in
    BadInput("pickle_pt", malicious_pickle("lora.pt"), "--allow-pickle"),
    BadInput("pickle_ckpt", malicious_pickle("lora.ckpt"), "pickle checkpoints are refused"),
    BadInput("pickle_bin", plain_pickle("pytorch_lora_weights.bin"), "pickle checkpoints are refused"),
    BadInput("pickle_named_safetensors", malicious_pickle("pickled.safetensors"), "looks like a torch pickle"),
    # -- halves without partners
    BadInput("kohya_down_without_up", _edited("kohya", _drop(UP)), "without its up partner", DOWN),
    BadInput("kohya_up_without_down", _edited("kohya", _drop(DOWN)), "without its down partner", UP),
    BadInput("diffusers_A_without_B", _edited("diffusers", _drop(B)), "without its up partner", A),
    BadInput("diffusers_B_without_A", _edited("diffusers", _drop(A)), "without its down partner", B),
    # -- tensors that do not fit the module
    BadInput("shape_mismatch_with_module", _edited("diffusers", _set(A, lambda sd: torch.zeros(4, 17))),
             f"shape mismatch with module unet.{MODULE}", A),
    BadInput("rank_mismatch_between_A_and_B", _edited("diffusers", _set(B, lambda sd: torch.zeros(16, 5))),
             "down has rank 4, up has rank 5", B),
    BadInput("rank_0", _edited("kohya", lambda sd: sd.update({DOWN: torch.zeros(0, 16), UP: torch.zeros(16, 0)})),
             "rank 0", DOWN),
    BadInput("one_d_down", _edited("kohya", _set(DOWN, lambda sd: torch.zeros(16))), "1-d (16,)", DOWN),
    BadInput("int8_lora_A", _edited("diffusers", _set(A, lambda sd: sd[A].to(torch.int8))), "dtype int8", A),
    BadInput("float8_lora_B", _edited("diffusers", _set(B, lambda sd: sd[B].to(torch.float8_e4m3fn))),
             "dtype float8_e4m3fn", B),
    BadInput("nan_in_lora_B", _edited("diffusers", _poke(B, float("nan"))), f"of unet.{MODULE} holds NaN", B),
    BadInput("inf_in_lora_A", _edited("kohya", _poke(DOWN, float("inf"))), f"of unet.{MODULE} holds NaN or Inf",
             DOWN),
    BadInput("two_keys_for_one_module", _edited("diffusers", _same_module_twice), "already sets",
             f"text_encoder.text_model.{TE_MODULE}.lora_A.weight"),
    # -- keys that fit no module, or another family
    BadInput("keys_match_no_module", _only_pair(NO_MODULE),
             "no key matches a module of this model; closest module names: down_blocks.1.attentions.0.proj_in",
             f"{NO_MODULE}.lora_A.weight"),
    BadInput("no_lora_keys", _edited("diffusers", _rename_all("lora_", "lorx_")), "unrecognised LoRA layout"),
    BadInput("sdxl_lora_for_sd15", _other_family("sdxl"), "made for sdxl ('text_encoder_2.' keys)"),
    BadInput("flux_lora_for_sd15", _other_family("flux"), "made for flux ('single_transformer_blocks' keys)"),
    BadInput("sd2_lora_for_sd15", _other_family("sd2"), "a file for the tiny sd2 model; try --family sd2"),
    # -- alpha tensors and header metadata
    BadInput("alpha_empty", _edited("kohya", _set(ALPHA, lambda sd: torch.zeros(0))), "holds 0", ALPHA),
    BadInput("alpha_several_elements", _edited("kohya", _set(ALPHA, lambda sd: torch.ones(2))), "holds 2", ALPHA),
    BadInput("alpha_nan", _edited("kohya", _set(ALPHA, lambda sd: torch.tensor(float("nan")))),
             "not a finite number", ALPHA),
    BadInput("alpha_inf", _edited("kohya", _set(ALPHA, lambda sd: torch.tensor(float("inf")))),
             "alpha is inf", ALPHA),
    BadInput("metadata_not_json", _metadata_text("{unet.lora_alpha: 2"), "not JSON", METADATA_KEY),
    BadInput("metadata_json_not_an_object", _metadata(lambda m: list(m)), "JSON list, not an object", METADATA_KEY),
    BadInput("alpha_pattern_invalid_regex", _metadata(lambda m: {**m, "unet.alpha_pattern": {"to_q(": 1.0}}),
             "not a valid regular expression", METADATA_KEY),
    BadInput("lora_alpha_not_a_number", _metadata(lambda m: {**m, "unet.lora_alpha": "high"}),
             "unet.lora_alpha is 'high'", METADATA_KEY),
    # -- bad options (the file is good)
    BadInput("nonexistent_model_path", _good_file, "no_such_model",
             options=lambda f: ["--model-path", str(f.parent / "no_such_model")],
             library=lambda good, f: pretrained_dir(str(f.parent / "no_such_model"))),
    BadInput("model_path_without_model_index", _good_file, "model_index.json missing",
             options=lambda f: ["--model-path", str(f.parent)], library=lambda good, f: pretrained_dir(str(f.parent))),
    BadInput("unknown_family", _good_file, "unknown family 'sd14'",
             options=lambda f: ["--family", "sd14"], library=lambda good, f: get_family("sd14")),
    # float16 and bfloat16 run on this torch's CPU (matmul, addmm and fuse all work), so no rule
    # refuses them there; float64 is refused everywhere because the tolerance table has no row for it.
    BadInput("unknown_dtype", _good_file, "unsupported dtype 'float8'",
             options=lambda f: ["--dtype", "float8"], library=lambda good, f: dtype_from_name("float8")),
    BadInput("float64_dtype", _good_file, "unsupported dtype 'float64'",
             options=lambda f: ["--dtype", "float64"], library=lambda good, f: dtype_from_name("float64")),
]


@pytest.fixture(scope="module")
def good() -> Good:
    return good_files()


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest) -> BadInput:
    return request.param


def _library_call(case: BadInput, good: Good, path: Path) -> object:
    if case.library is not None:
        return case.library(good, path)
    return read_lora(path, good.components)


def _cli(case: BadInput, path: Path) -> int:
    extra = case.options(path) if case.options else []
    return main(["check", "--family", "sd15", "--lora", str(path), *extra])


def _expected_in_message(case: BadInput, path: Path) -> list[str]:
    return [case.message, *([str(path)] if case.names_file else []), *([case.key] if case.key else [])]


# ---------------------------------------------------------------- generic checks


def unchanged(tmp_path: Path, before: dict) -> None:
    """Reading left the bad file (and its folder) as it was and created nothing; no pickle was executed."""
    assert differences(before, snapshot(tmp_path)) == []
    assert not (tmp_path / MARKER).exists()


# Each check below also holds that reading left the file and its folder as they were (``unchanged``): a
# third test that ran the library call and the CLI once more for that alone was a third of the matrix's cost.
def test_library_raises_parity_input_error_naming_file_and_key(case, good, tmp_path):
    path = case.write(good, tmp_path)
    before = snapshot(tmp_path)

    with pytest.raises(ParityInputError) as err:
        _library_call(case, good, path)

    unchanged(tmp_path, before)
    for needle in _expected_in_message(case, path):
        assert needle in str(err.value), (needle, str(err.value))
    if case.names_file:
        assert err.value.path == str(path)
    if case.key is not None:
        assert err.value.key == case.key


def test_cli_check_exits_2_with_one_stderr_line_naming_file_and_key(case, good, tmp_path, capsys):
    path = case.write(good, tmp_path)
    before = snapshot(tmp_path)
    capsys.readouterr()

    code = _cli(case, path)

    out, err = capsys.readouterr()
    unchanged(tmp_path, before)
    assert code == 2, out + err
    assert "Traceback" not in err + out
    [line] = err.splitlines()
    assert line.startswith("lora-parity: error: ")
    for needle in _expected_in_message(case, path):
        assert needle in line, (needle, line)


def test_matrix_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- under pytest


def test_pytest_reports_a_bad_lora_file_as_one_line_naming_it_not_a_traceback(good, tmp_path, pytester, monkeypatch):
    # Without the plugin's report hook the failure would be a traceback through parity/lora/reader.py.
    monkeypatch.setattr("parity.pytest.reports._ROWS", [])  # the inner run's summary rows stay out of this run's
    plain = plain_pickle("lora.pt")(good, tmp_path)
    merge_parity = Path(__file__).with_name("test_merge_parity.py")

    result = pytester.runpytest_inprocess(
        f"{merge_parity}::test_user_lora_fuse_matches_reference_merge", "-k", "float32", "--lora", str(plain),
        "-p", "no:cacheprovider", "-n", "0", "-q",
    )

    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert f"bad input: {plain}: pickle checkpoints are refused" in out
    assert "Traceback" not in out and "reader.py" not in out
