"""A tiny CLIP tokenizer built in code: no vocabulary file is fetched."""

from __future__ import annotations

import string

from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def tiny_vocab() -> dict[str, int]:
    vocab = {BOS: 0, EOS: 1}
    for ch in string.ascii_lowercase + string.digits + ".,!?'-":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return vocab


def tiny_clip_tokenizer(max_length: int = 77) -> CLIPTokenizer:
    # Without merges BPE splits every word into characters: enough to turn prompts into stable ids.
    merges: list[tuple[str, str]] = []
    return CLIPTokenizer(vocab=tiny_vocab(), merges=merges, model_max_length=max_length)
