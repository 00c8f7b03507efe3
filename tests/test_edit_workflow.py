"""Qwen-Image-Edit-2509 as its users run it (parity/checks/edit.py): the fused edit matches the no-fuse
edit within the derived budget for one, two and three input images in float32 and bfloat16, the fused
weights match our reference merge, and the workflow's safe fuse of a NaN adapter leaves the pipeline as
it was. Cases, including what diffusers gets wrong, come from the case table.

The workflow runs on the tiny edit pipeline with a synthesised file, or with ``--family qwenimage-edit
--model-path DIR --lora FILE`` on the user's folder and file. The refused-fuse cases test what
diffusers does with any NaN adapter, so they stay on the tiny pipeline."""

from __future__ import annotations

import pytest


from parity.checks.cases import NAN_PLACES, edit_cases, refused_fuse_cases
from parity.checks.edit import EditRequest, refused_fuse, run_edit
from parity.pytest.cases import params
from parity.zoo import FAMILIES, UNAVAILABLE
from tests.support.edit_files import edit_lora, with_nan


# diffusers < 0.36 (the gate's old env) has no edit pipeline: the family is absent, with its reason
pytestmark = pytest.mark.skipif("qwenimage-edit" not in FAMILIES, reason=UNAVAILABLE.get("qwenimage-edit", ""))


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    return edit_lora(tmp_path_factory.mktemp("edit"))


@pytest.fixture(scope="module")
def workflow_lora(request, lora_file):
    """The user's first --lora file; else the synthesised one, on the tiny pipeline only."""
    user = request.config.getoption("--lora")
    if user:
        return user[0]
    if request.config.getoption("--model-path") is not None:
        pytest.skip("the edit workflow on a model folder checks your file: give --lora FILE")
    return lora_file


@pytest.mark.parametrize("case", params(edit_cases()))
def test_fused_edit_matches_the_no_fuse_edit(case, workflow_lora, model_path, device):
    report = run_edit(EditRequest(workflow_lora, case.dtype, case.images, case.sequence, family=case.family,
                                  model_path=model_path, device=device))
    assert report.ok, report.failures


@pytest.mark.parametrize("case", params(refused_fuse_cases()))
def test_refused_safe_fuse_leaves_the_edit_pipeline_as_it_was(case, lora_file):
    poisoned = with_nan(lora_file, NAN_PLACES[case.place])
    result = refused_fuse(EditRequest(poisoned, family=case.family))
    assert result.ok, result.failures()


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    from parity.zoo import build_pipeline

    folder = tmp_path_factory.mktemp("edit-folder") / "qwen-image-edit"
    build_pipeline("qwenimage-edit").save_pretrained(folder)
    return folder


def test_check_passes_on_a_saved_tiny_edit_folder(saved_folder, lora_file, capsys):
    from parity.cli import main

    code = main(["check", "--family", "qwenimage-edit", "--model-path", str(saved_folder), "--lora", lora_file])
    out, err = capsys.readouterr()
    assert code == 0 and "PASS" in out, out + err


def test_an_edit_folder_without_its_processor_is_bad_input_naming_it(saved_folder, tmp_path, lora_file, capsys):
    import shutil

    from parity.cli import main

    broken = tmp_path / "no-processor"
    shutil.copytree(saved_folder, broken)
    shutil.rmtree(broken / "processor")
    code = main(["check", "--family", "qwenimage-edit", "--model-path", str(broken), "--lora", lora_file])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in out + err
    assert str(broken) in err and "processor/preprocessor_config.json" in err, err


def test_a_processor_folder_in_the_published_format_loads_without_torchvision(saved_folder, tmp_path):
    """The published folder's processor/ holds preprocessor_config.json (min_pixels/max_pixels, as
    transformers 4 wrote it for Qwen2.5-VL), not transformers 5's processor_config.json."""
    import json
    import shutil

    from parity.zoo.qwen_vl import folder_processor

    folder = tmp_path / "published-format"
    shutil.copytree(saved_folder, folder)
    (folder / "processor" / "processor_config.json").unlink()
    (folder / "processor" / "preprocessor_config.json").write_text(json.dumps({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor"}))
    processor = folder_processor(str(folder))
    size = processor.image_processor.size
    assert (size.shortest_edge, size.longest_edge) == (3136, 12845056)
    assert processor.image_token_id == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
