"""Long work shows progress: within a step, the weights compared out of the total, with the time
elapsed; and the CLI prints it without breaking its step lines."""

from __future__ import annotations

from contextlib import contextmanager

from parity.checks.check import CheckRequest, run_check
from parity.cli.output import StderrProgress
from parity.lora.reader import read_lora
from parity.lora.synth import write_lora
from parity.zoo import build_pipeline, get_family


class Recording:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.advances: list[tuple[str, int, int, str]] = []
        self.notes: list[str] = []

    def plan(self, steps: int) -> None:
        pass

    @contextmanager
    def step(self, label: str):
        self.steps.append(label)
        yield lambda ok: None

    def advance(self, done: int, total: int, what: str) -> None:
        self.advances.append((self.steps[-1], done, total, what))

    def note(self, message: str) -> None:
        self.notes.append(message)


def test_check_advances_through_every_targeted_weight_in_each_step(tmp_path):
    fam = get_family("sd15")
    components = fam.components(build_pipeline(fam))
    path = write_lora(components, {"unet": ("to_q", "to_v")}, tmp_path / "a.safetensors")
    targeted = len(read_lora(path, components).modules)
    progress = Recording()

    run_check(CheckRequest("sd15", (str(path),)), progress)

    for step in progress.steps:
        ticks = [(d, t) for s, d, t, _ in progress.advances if s == step]
        assert ticks and ticks[-1][0] == ticks[-1][1] == targeted, (step, ticks)
        assert [d for d, _ in ticks] == sorted(d for d, _ in ticks)


def test_stderr_progress_prints_advances_under_their_step_and_closes_it(capsys, monkeypatch):
    monkeypatch.setattr(StderrProgress, "ADVANCE_EVERY", 0.0)
    progress = StderrProgress(enabled=True)
    progress.plan(1)
    with progress.step("float32: fuse"):
        progress.advance(1, 2, "weights compared")
        progress.advance(2, 2, "weights compared")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[1/1] float32: fuse ..."
    assert lines[1].startswith("  1/2 weights compared, ") and lines[2].startswith("  2/2 weights compared, ")
    assert lines[3].startswith("[1/1] float32: fuse ... ok (")


def test_a_short_step_prints_no_advance_line(capsys):
    progress = StderrProgress(enabled=True)
    progress.plan(1)
    with progress.step("float32: fuse"):
        progress.advance(1, 1, "weights compared")
    assert capsys.readouterr().err.count("\n") == 1
