"""Qwen-Image-Edit-2509's prompt encoder in tiny form, built in code: a Qwen2 byte-level tokenizer, a
Qwen2.5-VL text encoder (vision tower included) and the Qwen2-VL processor, with no vocabulary or
weight fetched; and the same processor read from a real model folder.

The processor without torchvision: transformers 5 builds ``Qwen2VLProcessor`` with a video processor,
which needs torchvision, and the index's torchvision wheel does not load against the CPU build of
torch this project pins ("operator torchvision::nms does not exist"). The edit pipeline never passes
videos, so the processor here is ``Qwen2VLProcessor`` without its video processor, and its image
processor is transformers' own PIL backend (``Qwen2VLImageProcessorPil``, the same resize, rescale,
normalise and patching). No torchvision is installed or imported.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from parity.errors import ParityInputError

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")
CONFIG_FILES = ("preprocessor_config.json", "processor_config.json")
HIDDEN = 16  # the text encoder's width: the transformer's joint_attention_dim


def tiny_qwen2_tokenizer() -> Any:
    """Byte-level BPE over the 256 byte symbols and no merges: every prompt, in any script, becomes one
    id per UTF-8 byte, the same under every tokenizers version; plus Qwen's special tokens, which the
    edit pipeline's template and the processor's image placeholders are written in."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={symbol: i for i, symbol in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    return Qwen2TokenizerFast(tokenizer_object=backend, bos_token=None, unk_token=None, eos_token="<|im_end|>",
                              pad_token="<|endoftext|>", additional_special_tokens=list(SPECIAL_TOKENS[1:]))


def _token_id(tokenizer: Any, token: str) -> int:
    return int(tokenizer.convert_tokens_to_ids(token))


# (hidden size, attention heads, key/value heads, mrope sections): the tiny encoder's, and the published
# Qwen2.5-VL-7B's width and heads (head_dim 128, sections 16/24/24 as it ships) for a folder whose
# transformer is published and whose encoder need only fit it (parity/zoo/published.py)
TINY_TEXT = (HIDDEN, 2, 1, (1, 1, 2))
PUBLISHED_TEXT = (3584, 28, 4, (16, 24, 24))


def tiny_text_encoder(tokenizer: Any, text: tuple[int, int, int, tuple[int, ...]] = TINY_TEXT) -> Any:
    """A one-layer Qwen2.5-VL with a one-block vision tower, sized to the tokenizer's ids, ``text`` wide
    (TINY_TEXT: the rotary sections (1, 1, 2) split the head's 4 frequency pairs over time, height and
    width as mrope does)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    hidden, heads, kv_heads, sections = text
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": heads, "num_key_value_heads": kv_heads, "max_position_embeddings": 4096,
            "rope_scaling": {"type": "mrope", "mrope_section": list(sections)}, "rope_theta": 1e6,
            "bos_token_id": None, "eos_token_id": _token_id(tokenizer, "<|im_end|>"),
            "pad_token_id": _token_id(tokenizer, "<|endoftext|>"),
        },
        vision_config={
            "depth": 1, "hidden_size": HIDDEN, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": hidden,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [0],
        },
        image_token_id=_token_id(tokenizer, "<|image_pad|>"),
        video_token_id=_token_id(tokenizer, "<|video_pad|>"),
        vision_start_token_id=_token_id(tokenizer, "<|vision_start|>"),
        vision_end_token_id=_token_id(tokenizer, "<|vision_end|>"),
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


@functools.cache  # one class, however many processors are built
def _processor_class() -> type:
    from transformers import Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class ImagesOnlyQwen2VLProcessor(Qwen2VLProcessor):
        """``Qwen2VLProcessor`` without a video processor (module docstring): its attributes are the
        image processor and the tokenizer, which is all ``QwenImageEditPlusPipeline`` calls it with."""

        def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None,
                     **kwargs: Any) -> None:
            self.image_token = getattr(tokenizer, "image_token", "<|image_pad|>")
            self.video_token = getattr(tokenizer, "video_token", "<|video_pad|>")
            self.image_token_id = _token_id(tokenizer, self.image_token)
            self.video_token_id = _token_id(tokenizer, self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImagesOnlyQwen2VLProcessor


def images_only_processor(image_processor: Any, tokenizer: Any, chat_template: Any = None) -> Any:
    return _processor_class()(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template)


def tiny_processor(tokenizer: Any) -> Any:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return images_only_processor(Qwen2VLImageProcessorPil(), tokenizer)


def folder_processor(path: str) -> Any:
    """The processor of a model folder (``processor/``: the image processor's config and the tokenizer
    files, as Qwen-Image-Edit-2509 ships it), read from local files only; bad input naming the folder
    when it has none or cannot be read."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = os.path.join(path, "processor")
    # preprocessor_config.json as the published folder has it; processor_config.json as transformers 5 saves
    if not any(os.path.isfile(os.path.join(folder, name)) for name in CONFIG_FILES):
        raise ParityInputError("a Qwen-Image-Edit folder needs processor/preprocessor_config.json (the Qwen2-VL "
                               "image processor); it is missing", path=path)
    tokenizer_folder = folder if os.path.isfile(os.path.join(folder, "tokenizer_config.json")) \
        else os.path.join(path, "tokenizer")
    try:
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ParityInputError(f"cannot read the Qwen2-VL processor ({type(exc).__name__}: {exc})",
                               path=folder) from None
    return images_only_processor(image_processor, tokenizer, getattr(tokenizer, "chat_template", None))
