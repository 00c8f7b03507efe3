"""Negative controls for the "user files untouched" proof (tests/harness/test_user_files_untouched.py): the
snapshot must see one flipped byte, one added file and a touched mtime, and the write watch must see a
write attempt; and none of them may report a folder that was only read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.filesnap import differences, snapshot, watch_writes


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "model_index.json").write_text("{}")
    return tmp_path


def test_a_folder_that_was_only_read_shows_no_difference(folder):
    before = snapshot(folder)
    (folder / "unet" / "weights.bin").read_bytes()
    assert differences(before, snapshot(folder)) == []


def test_one_flipped_byte_is_detected_even_with_size_and_mtime_restored(folder):
    path = folder / "unet" / "weights.bin"
    before = snapshot(folder)
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[517] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # a writer that hides its traces
    assert differences(before, snapshot(folder)) == ["content changed: unet/weights.bin"]


def test_one_added_file_is_detected_in_itself_and_in_its_folder_listing(folder):
    before = snapshot(folder)
    (folder / "unet" / ".lock").write_bytes(b"")
    assert differences(before, snapshot(folder)) == ["added: unet/.lock", "content changed: unet"]


def test_a_file_created_and_removed_again_still_moves_its_folder_mtime(folder):
    st = os.stat(folder / "unet")
    os.utime(folder / "unet", ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))  # one second back, so a change shows
    before = snapshot(folder)
    (folder / "unet" / "tmp").write_bytes(b"x")
    (folder / "unet" / "tmp").unlink()
    assert differences(before, snapshot(folder)) == ["mtime changed: unet"]


def test_the_write_watch_sees_a_write_attempt_under_its_root_and_nothing_outside(folder, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with watch_writes(folder) as attempts:
        (folder / "model_index.json").read_text()
        (elsewhere / "out.json").write_text("{}")
        assert attempts == []
        with open(folder / "model_index.json", "a"):
            pass
        os.mkdir(folder / "new")
    assert [a.split()[0] for a in attempts] == ["open", "os.mkdir"]
    assert attempts[0].endswith("model_index.json")
