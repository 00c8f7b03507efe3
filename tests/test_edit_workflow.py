"""Qwen-Image-Edit-2509 as its users run it (parity/checks/edit.py): the fused edit matches the no-fuse
edit within the derived budget for one, two and three input images in float32 and bfloat16, the fused
weights match our reference merge, and the workflow's safe fuse of a NaN adapter leaves the pipeline as
it was. Cases, including what diffusers gets wrong, come from the case table."""

from __future__ import annotations

import pytest

from parity.checks.cases import NAN_PLACES, edit_cases, refused_fuse_cases
from parity.checks.edit import EditRequest, refused_fuse, run_edit
from parity.pytest.cases import params
from tests.support.edit_files import edit_lora, with_nan


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    return edit_lora(tmp_path_factory.mktemp("edit"))


@pytest.mark.parametrize("case", params(edit_cases()))
def test_fused_edit_matches_the_no_fuse_edit(case, lora_file):
    report = run_edit(EditRequest(lora_file, case.dtype, case.images, case.sequence, family=case.family))
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
