"""Negative controls of the Wan expert placement and of full differences: the merge check fails on a
file fused into the wrong expert, and on a full difference (a norm's .diff) that nothing merged, naming
what it missed. And the control of FUSE_DEFAULT_SKIPS_TRANSFORMER_2's remedy: fuse_lora with both experts
named does merge the low one.
"""

from __future__ import annotations

import torch

from parity.checks.fuse import fuse_all_or_nothing, live, load_files, measure_merge, snapshot
from parity.lora.neutral import DiffModule, LoraFile
from parity.lora.reader import read_lora
from parity.reference.merge import reference_merge
from parity.zoo import build_pipeline, get_family
from parity.zoo.experts import place
from tests.support.trainer_wan import musubi_wan

WAN = get_family("wan")


def test_a_low_expert_file_fused_into_the_high_expert_fails_the_merge_check(tmp_path):
    pipe = build_pipeline(WAN)
    components = WAN.components(pipe)
    path = musubi_wan(tmp_path / "low.safetensors")
    lora = read_lora(str(path), components)
    high = place(lora, WAN, "high")
    loaded = load_files(pipe, WAN, [high], None)  # where the file went: the high expert
    fuse_all_or_nothing(pipe, components)

    as_low = reference_merge(loaded.before, [(place(lora, WAN, "low"), 1.0)])
    wrong = measure_merge(loaded.before, live(components), as_low, torch.float32)
    right = measure_merge(loaded.before, live(components),
                          reference_merge(loaded.before, [(high, 1.0)]), torch.float32)

    assert right.ok, right.failures()
    assert not wrong.ok
    assert any(f.startswith("transformer_2.") for f in wrong.failures(limit=100))
    assert any(name.startswith("transformer.") for name in wrong.changed_untargeted)


def test_a_norm_difference_nothing_merged_fails_naming_the_norm():
    pipe = build_pipeline(WAN)
    components = WAN.components(pipe)
    before = snapshot(components)
    norm = pipe.transformer.blocks[0].norm2.weight
    diff = DiffModule("transformer", "blocks.0.norm2", torch.full_like(norm, 0.01))
    lora = LoraFile({("transformer", "blocks.0.norm2"): diff}, "comfyui-wan-diff",
                    sources={("transformer", "blocks.0.norm2"): ("diffusion_model.blocks.0.norm3.diff",)})

    result = measure_merge(before, live(components), reference_merge(before, [(lora, 1.0)]), torch.float32,
                           loras=[lora])  # the weights as they are: the difference dropped

    assert not result.ok
    [failure] = result.failures()
    assert failure.startswith("transformer.blocks.0.norm2.weight") and "diffusion_model.blocks.0.norm3.diff" in failure


def test_fusing_both_experts_merges_the_low_noise_lora(tmp_path):
    # FUSE_DEFAULT_SKIPS_TRANSFORMER_2 (parity/checks/findings.py): a plain fuse_lora() leaves it; named, it merges
    pipe = build_pipeline(WAN)
    pipe.load_lora_weights(str(musubi_wan(tmp_path / "low.safetensors")), adapter_name="low",
                           load_into_transformer_2=True)
    before = pipe.transformer_2.blocks[0].attn1.to_q.base_layer.weight.detach().clone()

    pipe.fuse_lora(components=["transformer", "transformer_2"])

    layer = pipe.transformer_2.blocks[0].attn1.to_q
    assert layer.merged_adapters == ["low"] and not torch.equal(layer.base_layer.weight, before)


def test_the_expert_option_offers_the_experts_choices():
    # parity/options.py spells them out to stay import-light; they must be parity/zoo/experts.py's
    from parity.options import EXPERT
    from parity.zoo.experts import EXPERT_CHOICES

    assert tuple(EXPERT.kwargs["choices"]) == EXPERT_CHOICES


def test_a_bfloat16_weight_held_to_the_float32_bound_fails(tmp_path, monkeypatch, capsys):
    # the control of test_wan_model_folders.py's bfloat16 folder check: one tolerance for the model's
    # first parameter's dtype (float32 there) fails that correct fuse
    import parity.checks.fuse as fuse
    from parity.cli import main
    from parity.lora.synth import write_lora
    from parity.tolerances import tolerance

    folder = tmp_path / "wan"
    WAN.build_tiny(0).save_pretrained(folder)
    lora = write_lora(WAN.components(WAN.build_tiny(0)), WAN.default_targets, tmp_path / "l.safetensors", rank=4,
                      alpha=2.0)
    monkeypatch.setattr(fuse, "weight_tolerance",
                        lambda check, device, actual, tols: (actual.dtype, tolerance(check, device, torch.float32)))
    code = main(["check", "--family", "wan", "--model-path", str(folder), "--lora", str(lora), "--dtype", "bfloat16",
                 "-q"])
    assert code == 1, capsys.readouterr().out[-2000:]
