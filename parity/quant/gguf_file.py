"""GGUF files of a denoiser's weights, written and read with gguf-py (llama.cpp's own Python package),
never with diffusers' GGUF code: the file the quantized check loads, and the dequantization its
reference starts from.

Written as city96's FLUX/Wan GGUFs are: every Linear weight (a 2-D ``.weight``) whose last dimension is a
whole number of blocks gets the quant type; everything else (biases, norms, convolutions, learned tokens
such as Z-Image's ``x_pad_token``, an input layer 4 channels wide) is F32.
Keys are the diffusers model's own state-dict names, which ``from_single_file`` takes as they are
(diffusers' ``_should_convert_state_dict_to_diffusers``: no conversion when the keys are the model's).
"""

from __future__ import annotations

import numpy as np
import torch

# bits per weight each block type carries, and its block length: the block's step is its scale d,
# read from the block's first two bytes (float16) for the types whose first field is d
_D_FIRST = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}


def _qtype(name: str):  # noqa: ANN202 - gguf's enum
    import gguf

    return gguf.GGMLQuantizationType[name]


def block_size(type_name: str) -> int:
    import gguf

    return gguf.GGML_QUANT_SIZES[_qtype(type_name)][0]


def write_gguf(state_dict: dict[str, torch.Tensor], path: str, type_name: str) -> str:
    """Write ``state_dict`` to ``path`` (a new GGUF), quantizing what fits ``type_name``'s blocks."""
    import gguf

    qtype, size = _qtype(type_name), block_size(type_name)
    writer = gguf.GGUFWriter(path, arch="lora-parity")
    for name, tensor in state_dict.items():
        array = tensor.detach().to("cpu", torch.float32).numpy()
        if name.endswith(".weight") and array.ndim == 2 and array.shape[-1] % size == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def dequantize_bytes(raw: torch.Tensor, type_name: str) -> torch.Tensor:
    """The float64 weights a GGUF tensor's packed bytes (uint8, shape (..., bytes per row)) hold."""
    import gguf

    array = raw.detach().to("cpu").contiguous().numpy().view(np.uint8)
    return torch.from_numpy(gguf.quants.dequantize(array, _qtype(type_name)).astype(np.float64))


def block_steps(raw: torch.Tensor, type_name: str) -> torch.Tensor | None:
    """Each weight's quantization step |d| (its block's scale), float64, the dequantized shape; None
    for a type whose blocks do not start with d (K-quants: super-blocks with sub-scales)."""
    import gguf

    if type_name not in _D_FIRST:
        return None
    size, type_bytes = gguf.GGML_QUANT_SIZES[_qtype(type_name)]
    array = raw.detach().to("cpu").contiguous().numpy().view(np.uint8)
    blocks = array.reshape(*array.shape[:-1], array.shape[-1] // type_bytes, type_bytes)
    d = np.ascontiguousarray(blocks[..., :2]).view(np.float16)[..., 0].astype(np.float64)
    return torch.from_numpy(np.repeat(np.abs(d), size, axis=-1))


def gguf_tensor_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Name → the logical (dequantized) shape of every tensor in a GGUF file, read from its header."""
    import gguf

    reader = gguf.GGUFReader(path)
    return {t.name: tuple(int(n) for n in reversed(t.shape.tolist())) for t in reader.tensors}
