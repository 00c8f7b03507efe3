"""FLUX.2's published parts beside its transformers (parity/zoo/fullsize.py), for parity/zoo/published.py:
the text encoders at their published widths and the VAE at its published latent channels. A module of its
own so that published.py stays readable (it holds every family's table).

The encoders take no LoRA in diffusers (Flux2LoraLoaderMixin loads the transformer alone); only their width
has to fit (joint_attention_dim = 3 x the width: the pipelines stack three hidden-state layers). They keep
the tiny encoders' layer count (parity/zoo/flux2.py: TEXT_LAYERS, 3), not one layer as Wan's UMT5 has: the
families' pipeline calls stack hidden states 1, 2 and 3 (OUT_LAYERS), so a published folder runs every
command a tiny one does, hotswap's pipeline level included. Their parameters count in the memory
prediction as a real encoder's do: 1.67 B for three Mistral-Small-3.1 layers, 0.30 B for three of Qwen3-4B,
0.58 B for three of Qwen3-8B.
"""

from __future__ import annotations

from torch import nn

from parity.zoo.weights import deterministic_tensor

LATENT_CHANNELS = 32  # AutoencoderKLFlux2 as published: 128 transformer in_channels = 32 x a 2x2 patch


def mistral_small_3_1() -> nn.Module:
    """Mistral-Small-3.1-24B's text widths (FLUX.2 [dev]'s text_encoder/config.json text_config: hidden 5120,
    32 heads of 128 over 8 KV heads, a 32768-wide MLP; 40 layers published) in the tiny encoder's layers,
    beside its tiny pixtral vision tower (a text prompt never runs it), over the tiny tokenizer."""
    from transformers import Mistral3ForConditionalGeneration

    from parity.zoo.flux2 import tiny_mistral3
    from parity.zoo.tokenizer import tiny_mistral_tokenizer

    config = tiny_mistral3(tiny_mistral_tokenizer()).config
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.head_dim = 5120, 32768, 128
    text.num_attention_heads, text.num_key_value_heads = 32, 8
    return Mistral3ForConditionalGeneration(config).eval()


def _qwen3(hidden: int, intermediate: int, tied: bool) -> nn.Module:
    from transformers import Qwen3ForCausalLM

    from parity.zoo.flux2 import tiny_qwen3_causal
    from parity.zoo.tokenizer import tiny_qwen_tokenizer

    config = tiny_qwen3_causal(len(tiny_qwen_tokenizer())).config
    config.hidden_size, config.intermediate_size, config.head_dim = hidden, intermediate, 128
    config.num_attention_heads, config.num_key_value_heads = 32, 8
    config.rms_norm_eps, config.tie_word_embeddings = 1e-6, tied
    return Qwen3ForCausalLM(config).eval()


def qwen3_4b() -> nn.Module:
    """Qwen/Qwen3-4B (FLUX.2 [klein] 4B's text_encoder, Qwen3ForCausalLM): hidden 2560, a 9728-wide MLP, 32
    heads of 128 over 8 KV heads, tied embeddings; 36 layers published."""
    return _qwen3(2560, 9728, tied=True)


def qwen3_8b() -> nn.Module:
    """Qwen/Qwen3-8B (FLUX.2 [klein] 9B's text_encoder): hidden 4096, a 12288-wide MLP, 32 heads of 128 over 8
    KV heads, untied embeddings; 36 layers published."""
    return _qwen3(4096, 12288, tied=False)


def flux2_vae() -> nn.Module:
    """Not LoRA-capable: the tiny AutoencoderKLFlux2 at the published 32 latent channels."""
    from diffusers import AutoencoderKLFlux2

    from parity.zoo.flux2 import tiny_vae

    return AutoencoderKLFlux2.from_config({**tiny_vae(0, "flux2/published/vae-config").config,
                                           "latent_channels": LATENT_CHANNELS})


def positive_variance(vae: nn.Module, seed: int, namespace: str) -> None:
    """After fill_deterministic: the VAE's BatchNorm running variance drawn positive (near 1), as the tiny
    VAE's is (parity/zoo/flux2.py: tiny_vae). The pipelines un-normalise latents by sqrt(running_var + eps);
    a variance drawn around 0, as every other 1-D buffer is, would turn half the channels into NaN."""
    var = vae.bn.running_var
    var.copy_(deterministic_tensor(seed, f"{namespace}/bn.running_var/positive", tuple(var.shape), 0.1).exp()
              .to(var.dtype))
