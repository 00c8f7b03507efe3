"""The pinned findings: what diffusers/PEFT do instead of what a check demands, as data.

Each is a ``Known`` on the cases that show it (parity/checks/cases.py), where the generic check is
expected to fail (a strict xfail, so an upgrade that changes the behaviour shows), and the CLI names
one in a user's verdict when the run shows its symptom (parity/checks/known_findings.py). The reason
is what was measured and where in diffusers/PEFT it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

from parity.errors import LoaderRefused


@dataclass(frozen=True)
class Known:
    """A finding: what diffusers/PEFT does instead of what the check demands."""

    reason: str
    raises: type[BaseException] = AssertionError


FLUX_DIFFUSION_MODEL = Known(
    "finding: FluxLoraLoaderMixin reads `diffusion_model.` only inside kohya files with BFL names "
    "(lora_conversion_utils: renamed to lora_unet_); a diffusion_model.<diffusers name>.lora_A file loses "
    "every key to the `transformer.` prefix filter and load_lora_weights only logs a warning",
    raises=LoaderRefused,
)

KOHYA_Q_PROJ_ONLY = Known(
    "finding: a kohya text-encoder LoRA on q_proj only fails to load ('Could not automatically infer state "
    "dict type'): convert_state_dict_to_diffusers recognises the old format only by a to_out_lora key, "
    "which such a file does not have",
    raises=LoaderRefused,
)

LEGACY_ALPHA = Known(
    "finding: diffusers' legacy-format loader (convert_state_dict_to_diffusers, DIFFUSERS_OLD) keeps the "
    "to_q_lora/.lora/.lora_linear_layer pairs but drops their .alpha keys: every module fuses r/α times the "
    "reference delta (2x for α/r = 0.5)"
)

SGM_SD15 = Known(
    "finding: a kohya file on original (SGM) block names is refused on SD1.5: StableDiffusionLoraLoaderMixin."
    "load_lora_weights calls lora_state_dict without unet_config (the SDXL loader passes it), so "
    "_maybe_map_sgm_blocks_to_diffusers never runs and the names come out as modules no UNet has "
    "(`down_blocks.3.1.proj_in`, `mid_block.1.…`): NoMatchingPeftModuleError",
    raises=LoaderRefused,
)

BFL_WIDTHS = Known(
    "finding: diffusers splits a kohya/ComfyUI FLUX.1 file's single-block linear1 at FLUX.1-dev's hard-coded "
    "widths (dims=[3072, 3072, 3072, 12288], 19 double and 38 single blocks in _convert_sd_scripts_to_ai_toolkit), "
    "not the model's: any other width is refused with an AssertionError",
    raises=LoaderRefused,
)

LORA_TRANSFORMER = Known(
    "finding: a FLUX.1 file on lora_transformer_ keys (diffusers names, kohya pairs) is refused: "
    "_convert_mixture_state_dict_to_diffusers raises KeyError 'single_transformer_blocks.0.weight'",
    raises=LoaderRefused,
)

QWEN_ALPHA_KEYS = Known(
    "finding: a Qwen-Image file with PEFT pairs under transformer. and a .alpha per module is refused: the "
    "alpha keys send it through _convert_non_diffusers_qwen_lora_to_diffusers, which keeps the transformer. "
    "prefix, so no target module matches (NoMatchingPeftModuleError)",
    raises=LoaderRefused,
)

KOHYA_PER_MODULE_ALPHA = Known(
    "finding: in a kohya SD/SDXL file with per-module alpha (resize_lora.py --dynamic_method), the attention "
    "projections and text-encoder layers get the file's most common alpha, not their own: _get_alpha_name "
    "names each alpha by diffusers_name.split('.lora.')[0], and their converted keys (to_q_lora, "
    "lora_linear_layer) hold no '.lora.', so their alpha_pattern entries match no module"
)

ALPHA_BAKED_IN_FILE_DTYPE = Known(
    "finding: a Qwen-Image, Wan, Z-Image or kohya FLUX.2 file with .alpha keys has α/r baked into its factors in "
    "their own dtype (_convert_non_diffusers_qwen_lora_to_diffusers, the Wan and Z-Image converters' "
    "get_alpha_scales, _convert_kohya_flux2_lora_to_diffusers: down * scale_down, up * scale_up): with bfloat16 factors "
    "and α/r = 0.75, not a power of two, every factor is rounded once more in bfloat16, and the fused weight "
    "misses the reference by that rounding (measured: up to ~45000 float32 ULPs, diagnosed as an extra "
    "rounding of the delta in bfloat16)"
)

SECOND_FUSE = Known(
    "finding: diffusers' _fuse_lora_apply calls peft scale_layer(lora_scale) on every fuse and unfuse_lora "
    "never undoes it, so fuse(0.5) → unfuse → fuse(0.5) merges 0.25·δ"
)

UNLOAD_AFTER_FUSE = Known(
    "finding: unload_lora_weights after fuse_lora does not restore the base weights — "
    "diffusers.utils.peft_utils.recurse_remove_peft_layers replaces each LoRA layer by "
    "target.get_base_layer() without unmerge(), so the fused W + δ stays (call unfuse_lora first)"
)

ACTIVE_ADAPTERS = Known(
    "finding: get_active_adapters() returns the active list of the first LoRA layer of the *last* "
    "component that has one (lora_base.py get_active_adapters: the break leaves only the inner loop), "
    "so after loading a (unet+text_encoder) then b (unet only) it reports ['a'] while the unet runs b"
)

EDIT_SAME_ADAPTER_NAME = Known(
    "finding: the Qwen-Image-Edit workflow's fuse block, run after its no-fuse block on the same pipeline as "
    "the workflow's code runs it, stops at load_lora_weights: PEFT refuses the adapter name the no-fuse block "
    "loaded (ValueError 'Adapter name edit already in use in the model - please select a new adapter name'); "
    "the unfuse_lora() before it unloads nothing. The no-fuse block's adapter stays loaded and active"
)

SAFE_FUSE_PARTIAL = Known(
    "finding: fuse_lora(safe_fusing=True) refuses a NaN adapter only when it reaches that layer: the layers "
    "fused before it stay fused and marked merged (measured on the tiny Qwen-Image-Edit with the NaN in "
    "proj_out, the last module fused: the other 17 of its 18 targeted weights left fused). With the NaN in the first "
    "module fused, nothing changes"
)

DORA_SCALE_DROPPED = Known(
    "finding: diffusers drops the dora_scale keys of a kohya/LyCORIS DoRA file before converting it "
    "(lora_state_dict of the SD1.5, SDXL, FLUX.1 and Qwen-Image loaders: 'It seems like you are using a DoRA "
    "checkpoint that is not compatible in Diffusers at the moment', a warning only) and loads the rest as plain "
    "LoRA: every DoRA module fuses W + ΔW, without m / ‖W + ΔW‖. A PEFT file's lora_magnitude_vector is kept"
)

LYCORIS_REFUSED = Known(
    "finding: diffusers has no loader for LyCORIS's LoHa (hada_*), LoKr (lokr_*) or tucker (lora_mid) "
    "modules in SD1.5, SDXL, FLUX.1 or Qwen-Image files: _convert_non_diffusers_lora_to_diffusers takes only "
    "lora_down, lora_up, alpha and dora_scale and raises 'The following keys have not been correctly renamed' "
    "for the rest; FLUX.1's loader drops them and loads no adapter, with only a logged warning (set_adapters "
    "then raises 'Adapter name(s) {'a0'} not in the list of present adapters'). Only the Z-Image and Flux2 "
    "loaders route lokr_ keys to PEFT's LoKr",
    raises=LoaderRefused,
)


WAN_DIFF_B = Known(
    "finding: in a Wan file with .diff_b keys, diffusers' _convert_non_diffusers_wan_lora_to_diffusers makes each "
    "a lora_B.bias, so PEFT builds every LoRA layer of the file with a bias (lora_bias) and a module with a "
    ".diff_b but no pair gets lora_A/lora_B as well; loaded with low_cpu_mem_usage, every such tensor the file "
    "lacks stays on the meta device and the model cannot run. The .diff weights themselves are dropped with an "
    "info log",
    raises=LoaderRefused,
)

WAN_NO_PREFIX = Known(
    "finding: WanLoraLoaderMixin converts diffusion_model. and lora_unet_ files only; a DiffSynth-Studio Wan file "
    "(Wan's original names, no prefix, lora_A.default) keeps no key under transformer. and load_lora_weights "
    "loads nothing, with only a logged warning",
    raises=LoaderRefused,
)

WAN_MUSUBI_KEYS = Known(
    "finding: diffusers' musubi Wan converter (_convert_musubi_wan_lora_to_diffusers) pops, for every block "
    "0..n-1, the q/k/v/o pairs of both attentions, ffn.0 and ffn.2, and each one's .alpha: a lora_unet_ Wan "
    "file trained with exclude_patterns (musubi-tuner's own option), or without alpha keys, is refused with a "
    "KeyError",
    raises=LoaderRefused,
)

WAN_DIFFS_DROPPED = Known(
    "finding: diffusers' _convert_non_diffusers_wan_lora_to_diffusers drops every .diff/.diff_b whose key "
    "contains 'norm' ('norm layer diff keys are just zeroed values'), and every other .diff/.diff_m it has no "
    "rule for (patch_embedding, the modulations' .diff_m) with an info-level log only: a ComfyUI LoraSave or "
    "LightX2V extraction loads without its norm, patch-embedding and modulation changes",
)

FUSE_DEFAULT_SKIPS_TRANSFORMER_2 = Known(
    "finding: WanLoraLoaderMixin.fuse_lora defaults to components=['transformer'] (copied from CogVideoX's, one "
    "transformer), while load_lora_weights(load_into_transformer_2=True) puts a LoRA in transformer_2 and "
    "unload_lora_weights walks both (_lora_loadable_modules): fuse_lora() then unload_lora_weights(), the bake-in "
    "idiom, leaves the low-noise expert's LoRA unfused and then removes it, silently (its step equals the base "
    "model's, measured bit for bit; transformer's LoRA stays fused). fuse_lora(components=['transformer', "
    "'transformer_2']) fuses both"
)


ZIMAGE_ALPHA_KEYS = Known(
    "finding: a Z-Image file with PEFT pairs under transformer. and a .alpha per module is refused: the alpha keys "
    "send it through _convert_non_diffusers_z_image_lora_to_diffusers, which prefixes transformer. once more "
    "(transformer.transformer.layers.0…), so no target module matches (NoMatchingPeftModuleError)",
    raises=LoaderRefused,
)

ZIMAGE_FUSED_QKV_DROPPED = Known(
    "finding: in a Z-Image file on ComfyUI's names under diffusion_model. (ComfyUI LoraSave: "
    "diffusion_model.layers.0.attention.qkv.lora_down.weight), _convert_non_diffusers_z_image_lora_to_diffusers "
    "splits the fused attention.qkv only in lora_unet_ files (its '.lora.down.weight' branch) and renames "
    "x_embedder/final_layer nowhere: here it makes attention.qkv, x_embedder and final_layer.* pairs for modules "
    "ZImageTransformer2DModel does not have, and PEFT drops them with a warning. to_q, to_k, to_v, "
    "all_x_embedder.2-1 and all_final_layer.2-1.* keep their base weights (measured on a LoraSave file: 15 of its "
    "37 modules, every element over its bound, 'diffusers merged nothing into it'); attention.out (→ to_out.0) loads"
)

ZIMAGE_DIFFS_REFUSED = Known(
    "finding: a Z-Image file with full differences (ComfyUI LoraSave: .diff on the norms, .diff_b on the biases, "
    "beside the pairs) is refused: _convert_non_diffusers_z_image_lora_to_diffusers converts the pairs and their "
    "alphas only and raises ValueError '`state_dict` should be empty at this point' on the .diff/.diff_b keys left",
    raises=LoaderRefused,
)

FLUX2_FINAL_MODULATION_NOT_SWAPPED = Known(
    "finding: diffusers' _convert_non_diffusers_flux2_lora_to_diffusers maps a FLUX.2 file's "
    "final_layer.adaLN_modulation.1 onto norm_out.linear as is, but BFL's LastLayer chunks it shift|scale (flux2 "
    "src/flux2/model.py: shift, scale = mod.chunk(2)) and diffusers' AdaLayerNormContinuous scale|shift: the LoRA's "
    "shift rows land on the scale and the other way round (measured on an ai-toolkit file with transformer_only: "
    "false: every element of norm_out.linear over its bound, diagnosed 'output halves are swapped'; the FLUX.1 "
    "converter swaps them)"
)

FLUX2_LOKR_QKV_FUSED = Known(
    "finding: a FLUX.2 LoKr file on BFL's fused img_attn.qkv / txt_attn.qkv (ai-toolkit's LoKr: diffusion_model."
    "double_blocks.N.img_attn.qkv.lokr_w1) makes load_lora_weights call transformer.fuse_qkv_projections() "
    "(peft_utils _maybe_fuse_qkv_projections_for_lokr): the LoKr and fuse_lora's merge go into new attn.to_qkv / "
    "to_added_qkv Linears, which the forward then uses, while to_q/to_k/to_v and add_q/k/v_proj keep their base "
    "weights (measured on the tiny klein: every element of those 12 weights over its bound, the file's other 16 "
    "modules within theirs, to_qkv within the bound of base q|k|v + the reference delta, the forward the loaded "
    "pipeline's); the model stays fused after unfuse_lora/unload_lora_weights"
)

FLUX2_LYCORIS_BFL_NAMES_REFUSED = Known(
    "finding: Flux2LoraLoaderMixin sends every LoKr file with a lycoris_ key to _convert_lycoris_flux2_lokr_to_"
    "diffusers, whose pattern takes diffusers' block names only (lycoris_(single_)transformer_blocks_N_ + an attn/ff "
    "sub-path): ai-toolkit's old_lokr_format FLUX.2 file (lycoris_double_blocks_0_img_attn_qkv.lokr_w1, BFL names) "
    "raises ValueError 'These keys are not LyCORIS Flux2 LoKr keys'",
    raises=LoaderRefused,
)

FLUX2_KOHYA_PAIRS_UNDER_DIFFUSION_MODEL = Known(
    "finding: Flux2LoraLoaderMixin sends every file with a .lora_down.weight key to _convert_kohya_flux2_lora_to_"
    "diffusers, which reads lora_unet_ keys only: a ComfyUI FLUX.2 file (diffusion_model.double_blocks.0.img_attn."
    "qkv.lora_down.weight, LoraSave's format) converts to nothing, 'Unsupported keys' is logged as a warning and "
    "load_lora_weights loads no LoRA",
    raises=LoaderRefused,
)

FLUX2_NO_PREFIX = Known(
    "finding: Flux2LoraLoaderMixin converts lora_unet_, base_model.model. / diffusion_model. and lokr_/lycoris_ files "
    "only; a DiffSynth-Studio FLUX.2 file (Flux2DiT, diffusers' module names, no prefix, lora_A.default: "
    "transformer_blocks.0.attn.to_q.lora_A.default.weight) keeps no key under transformer. and load_lora_weights "
    "loads nothing, with only a logged warning",
    raises=LoaderRefused,
)

FLUX2_LYCORIS_PAIRS_REFUSED = Known(
    "finding: Flux2LoraLoaderMixin sends every file with a .lora_down.weight key to _convert_kohya_flux2_lora_to_"
    "diffusers, which reads lora_unet_ keys only: a LyCORIS LoCon FLUX.2 file (create_lycoris algo lora/locon, as "
    "SimpleTuner trains it: lycoris_transformer_blocks_0_attn_to_q.lora_down.weight) converts to nothing, "
    "'Unsupported keys' is logged as a warning and load_lora_weights loads no LoRA",
    raises=LoaderRefused,
)


HOTSWAP_ALPHA_PATTERN = Known(
    "finding: PEFT refuses to hotswap a file whose per-module alphas (LoraConfig alpha_pattern) differ from the "
    "first file's: check_hotswap_configs_compatible compares alpha_pattern for equality ('Configs are incompatible: "
    "for alpha_pattern …'; its docstring: swapping alphas 'is not implemented yet'); only a uniform lora_alpha may "
    "change. Shown by musubi FLUX.2 files whose fused img_attn.qkv is read as q, k, v at rank 3r and alpha 3α "
    "(ours written with independent members; a trainer's rank-r LoRA on the fused Linear reads at rank r, "
    "uniform) swapped for a file with another alpha: diffusers raises and deletes the adapter"
)
