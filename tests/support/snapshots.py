"""Model folders as ``huggingface-cli download`` leaves a Hub repository: full weights sharded with their
``*.safetensors.index.json``, an ``fp16`` variant beside them, ``.bin`` pickles beside the safetensors,
SD1.5's ``safety_checker`` and ``feature_extractor`` components, README.md and .gitattributes at the root.

Every pickle here is a canary: unpickling it creates ``UNPICKLED`` in the folder, so a test can prove that
nothing ever unpickled it. The safety checker's config is not JSON: touching it would fail loudly.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch


class _Canary:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # what unpickling runs
        return (os.makedirs, (self.path,))


def canary(folder: Path) -> Path:
    return folder / "UNPICKLED"


def _pickle(path: Path, root: Path) -> None:
    path.write_bytes(pickle.dumps(_Canary(str(canary(root)))))


def hub_snapshot(family: str, root: Path, shard: str = "20KB", seed: int = 0) -> Path:
    """The tiny ``family`` pipeline as a Hub snapshot (see the module docstring)."""
    from parity.zoo import get_family

    pipe = get_family(family).build_tiny(seed)
    pipe.save_pretrained(root, max_shard_size=shard)  # full weights, sharded: the index is what loads
    pipe.to(torch.float16).save_pretrained(root, variant="fp16")  # one file per component
    for component in root.iterdir():
        if component.is_dir() and any(component.glob("*.safetensors")):
            stem = "model" if any(component.glob("model*.safetensors")) else "diffusion_pytorch_model"
            _pickle(component / f"{'pytorch_model' if stem == 'model' else stem}.bin", root)
            _pickle(component / f"{'pytorch_model' if stem == 'model' else stem}.fp16.bin", root)
    (root / "README.md").write_text("---\nlicense: other\n---\n# a model card\n")
    (root / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    if family == "sd15":
        index = json.loads((root / "model_index.json").read_text())
        index["safety_checker"] = ["stable_diffusion", "StableDiffusionSafetyChecker"]
        index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
        index["requires_safety_checker"] = True
        (root / "model_index.json").write_text(json.dumps(index, indent=2))
        (root / "safety_checker").mkdir()
        (root / "safety_checker" / "config.json").write_text("not json: never to be read")
        _pickle(root / "safety_checker" / "pytorch_model.bin", root)
        (root / "feature_extractor").mkdir()
        (root / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps(
            {"image_processor_type": "CLIPImageProcessor", "crop_size": {"height": 224, "width": 224},
             "do_center_crop": True, "do_normalize": True, "do_resize": True, "size": {"shortest_edge": 224}}))
    return root
