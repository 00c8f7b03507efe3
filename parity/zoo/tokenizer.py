"""Tiny CLIP, T5, Qwen and Mistral tokenizers built in code: no vocabulary file is fetched.

They must give the same ids under every transformers version a gate compares (golden images
depend on them). transformers 5 builds both from in-memory vocabularies; transformers 4 wants
files (CLIP) or a tokenizers object (T5), so the same vocabularies are handed over that way.
"""

from __future__ import annotations

import json
import os
import string
import tempfile
from typing import Any

from parity.versions import major_version

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CHARS = string.ascii_lowercase + string.digits + ".,!?'-"
T5_MAX_LENGTH = 512  # FluxPipeline's max_sequence_length cap


def tiny_vocab() -> dict[str, int]:
    vocab = {BOS: 0, EOS: 1}
    for ch in CHARS:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return vocab


def _transformers_4() -> bool:
    """transformers 4's tokenizers take files (or a tokenizers object), not vocabularies."""
    return major_version("transformers") < 5


def tiny_clip_tokenizer(max_length: int = 77) -> Any:
    # Without merges BPE splits every word into characters: enough to turn prompts into stable ids.
    from transformers import CLIPTokenizer

    if not _transformers_4():
        return CLIPTokenizer(vocab=tiny_vocab(), merges=[], model_max_length=max_length)
    folder = tempfile.mkdtemp(prefix="lora-parity-clip-")
    vocab_file, merges_file = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        json.dump(tiny_vocab(), f)
    with open(merges_file, "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
    return CLIPTokenizer(vocab_file, merges_file, model_max_length=max_length)


def t5_vocab() -> list[tuple[str, float]]:
    # T5's fixed head: <pad>=0, </s>=1, <unk>=2; then the word-start marker and the characters.
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for ch in CHARS:
        vocab += [("▁" + ch, -3.0), (ch, -4.0)]
    return vocab


def tiny_t5_tokenizer() -> Any:
    """A T5 (Unigram) tokenizer: every word splits into single characters."""
    if not _transformers_4():
        from transformers import T5Tokenizer

        return T5Tokenizer(vocab=t5_vocab(), extra_ids=0, model_max_length=T5_MAX_LENGTH)
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    # What transformers 5's T5Tokenizer assembles from a vocabulary, built by hand.
    backend = Tokenizer(models.Unigram(t5_vocab(), unk_id=2, byte_fallback=False))
    backend.normalizer = normalizers.Sequence([normalizers.Replace(" {2,}", " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(tokenizer_object=backend, extra_ids=0, model_max_length=T5_MAX_LENGTH)


# Qwen3's chat markers (Qwen3-4B's tokenizer_config.json), and the chat template reduced to what
# ZImagePipeline and Flux2KleinPipeline render: one user turn and the generation prompt. Qwen3's own
# template adds an empty think block after the generation prompt only when enable_thinking is False:
# Z-Image passes True (nothing added), FLUX.2 [klein] False (the block, spelled per character here:
# <think> is no token of this vocabulary, and adding it would change Z-Image's ids and weights).
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
QWEN_MAX_LENGTH = 512  # ZImagePipeline's max_sequence_length default


def tiny_qwen_tokenizer() -> Any:
    """A Qwen-style (BPE) tokenizer with a chat template: the markers are special tokens, everything else
    one token per printable character (no merges), so the chat-rendered prompt has stable ids.

    Built from a tokenizers object, which every transformers version takes: Qwen3's real tokenizer is a
    byte-level BPE of 151k entries, which nothing here needs."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(QWEN_SPECIAL)}
    for ch in string.printable:  # letters, digits, punctuation, space and newline
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<|endoftext|>"))
    backend.add_special_tokens(list(QWEN_SPECIAL))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        chat_template=QWEN_CHAT_TEMPLATE, model_max_length=QWEN_MAX_LENGTH,
    )


# Mistral's control tokens (Mistral-Small-3.1's tekken vocabulary names them so; their ids here are not
# its ids), and its chat template reduced to what Flux2Pipeline renders: a system turn and a user turn whose
# content is a list of {"type": "text"} blocks (an image block becomes [IMG], which a text-only call never
# sends), each in its markers, after <s>.
MISTRAL_SPECIAL = ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]",
                   "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]")
MISTRAL_CHAT_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{%- if message['content'] is string %}{%- set text = message['content'] %}"
    "{%- else %}{%- set ns = namespace(text='') %}{%- for block in message['content'] %}"
    "{%- if block['type'] == 'text' %}{%- set ns.text = ns.text + block['text'] %}"
    "{%- else %}{%- set ns.text = ns.text + '[IMG]' %}{%- endif %}{%- endfor %}{%- set text = ns.text %}{%- endif %}"
    "{%- if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{%- elif message['role'] == 'user' %}[INST]{{ text }}[/INST]"
    "{%- else %}{{ text }}{{ eos_token }}{%- endif %}{%- endfor %}"
)
MISTRAL_MAX_LENGTH = 512  # Flux2Pipeline's max_sequence_length default


def tiny_mistral_tokenizer() -> Any:
    """A Mistral-style tokenizer with a chat template that renders content lists: the control tokens are
    special tokens, everything else one token per printable character (no merges), so the chat-rendered
    prompt has stable ids under every transformers version (built from a tokenizers object, as
    tiny_qwen_tokenizer).

    FLUX.2 [dev] ships a PixtralProcessor as its tokenizer; transformers 5 builds none without torchvision,
    which this project does not load (parity/zoo/qwen_vl.py). Flux2Pipeline's text-only prompt encoding
    calls ``tokenizer.apply_chat_template(..., tokenize=True, return_dict=True, padding="max_length",
    truncation=True)``, which a tokenizer answers as the processor does for text: the tokenizer stands in."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(MISTRAL_SPECIAL)}
    for ch in string.printable:
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.add_special_tokens(list(MISTRAL_SPECIAL))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        chat_template=MISTRAL_CHAT_TEMPLATE, model_max_length=MISTRAL_MAX_LENGTH,
    )
