"""Which model family a LoRA file's keys look like it was made for, from key signatures only.

Used only to word an error about a file that does not fit the model it is checked against, so it
must never claim more than the keys show: a family is named only on a key fragment no other zoo
family's LoRAs carry, and the fragment is quoted as the evidence.
"""

from __future__ import annotations

from collections.abc import Iterable

# (fragment, family): first match wins. Order matters where fragments nest: Flux's single blocks
# are checked before anything generic. SD1.5 has no fragment of its own (every SD1.5 key also
# fits SDXL's unet), so it is never guessed.
SIGNATURES: tuple[tuple[str, str], ...] = (
    ("text_encoder_2.", "sdxl"),
    ("lora_te2_", "sdxl"),
    ("single_transformer_blocks", "flux"),
    ("lora_transformer_single_transformer_blocks", "flux"),
    ("img_mlp", "qwenimage"),
    ("txt_mlp", "qwenimage"),
)


def guess_family(keys: Iterable[str]) -> tuple[str, str] | None:
    """(family, the key fragment that says so), or None when no key carries a signature."""
    keys = list(keys)
    for fragment, family in SIGNATURES:
        if any(fragment in key for key in keys):
            return family, fragment
    return None


def describe_guess(keys: Iterable[str]) -> str:
    """A clause for an error message: '; the keys look like a LoRA for sdxl (text_encoder_2. keys)', or ''."""
    guess = guess_family(keys)
    if guess is None:
        return ""
    family, fragment = guess
    return f"; the keys look like a LoRA made for {family} ({fragment!r} keys)"
