"""Whether this diffusers has the Wan family as the zoo builds it: WanPipeline with a second expert
(``transformer_2``, ``boundary_ratio``) and ``load_lora_weights(..., load_into_transformer_2=True)``.

All three came with Wan 2.2 in diffusers 0.35.0 (read from the wheels: 0.34.0's pipeline_wan.py and
lora_pipeline.py name none of them, 0.35.0's and 0.35.2's name all three), so the gate's old env
(diffusers 0.35.2) has the family; an older diffusers leaves it out with this reason, as
qwenimage_edit.available() does. Read from the installed version: importing diffusers here would cost
every command a second and a half at start.
"""

from __future__ import annotations

from parity.versions import library_versions, version_at_least

SINCE = (0, 35)


def available() -> str | None:
    """None where this diffusers has the two-expert WanPipeline, else why the wan family is absent."""
    if version_at_least("diffusers", SINCE):
        return None
    return (f"diffusers {library_versions()['diffusers']} has no two-expert WanPipeline (transformer_2, "
            "boundary_ratio, load_into_transformer_2: added with Wan 2.2 in diffusers 0.35)")
