"""Run one ``lora-parity`` command in this process and report its peak host memory as the last line on
stderr: ``peak-rss-bytes <n>``.

The peak is the process's own address space's high-water mark (VmHWM in /proc/self/status), not
ru_maxrss: Linux carries the maximum RSS of the image a process replaced across execve, and Python
starts a subprocess by vfork + exec, so a child's ru_maxrss starts at its parent's lifetime peak. A
pytest worker that had run other slow tests reported 5.45 GiB for a check that itself peaks under 3 GiB
(measured: a parent that touched 3 GiB gives its child ru_maxrss 3.2 GiB, VmHWM 11 MiB).
``--keep-full-copy`` first makes the check keep a full copy of the loaded pipeline's components alive:
the negative control of the memory bound.

    python -m tests.support.peak_memory [--keep-full-copy] check --family ... --model-path ... --lora ...
"""

from __future__ import annotations

import copy
import resource
import sys

MARKER = "peak-rss-bytes"


def peak_of(*argv: str) -> tuple[int, float, str]:
    """(exit code, peak bytes, stdout) of ``lora-parity *argv`` run alone in a fresh process."""
    import subprocess

    run = subprocess.run([sys.executable, "-m", "tests.support.peak_memory", *argv], capture_output=True, text=True,
                         check=False)
    lines = run.stderr.strip().splitlines()
    # no marker: the process died before printing it (a kill by the kernel's OOM killer prints nothing)
    assert lines and lines[-1].startswith(MARKER), f"exit {run.returncode}: {run.stderr[-2000:]}"
    return run.returncode, float(lines[-1].split()[1]), run.stdout


def keep_full_copies() -> list:
    """Every pipeline check loads files into is deep-copied and kept: what a check must never do."""
    from parity.checks import check

    kept: list = []
    original = check.load_files

    def load_files(pipe, family, *args, **kwargs):
        kept.append(copy.deepcopy(family.components(pipe)))
        return original(pipe, family, *args, **kwargs)

    check.load_files = load_files
    return kept


def peak_bytes() -> int:
    """This address space's peak resident memory; ru_maxrss where /proc is absent (not Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv: list[str]) -> int:
    kept = keep_full_copies() if argv[:1] == ["--keep-full-copy"] else None
    argv = argv[1:] if kept is not None else argv
    from parity.cli import main as cli

    code = cli(argv)
    print(f"{MARKER} {peak_bytes()}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
