"""Checks of the CI recipes users copy (.github/workflows/*.yml, docs/ci/gitlab-ci.yml; docs/ci.md):
their structure as GitHub Actions and GitLab CI read it, and that every command a step runs exists here.

- structure: GitHub: ``name``, ``on`` (PyYAML reads the bare key as True), ``jobs``; each job has
  ``runs-on`` and ``steps``, each step exactly one of ``run`` / ``uses``, each action pinned to a version,
  each cron five fields. GitLab: ``stages``; each job (a top-level key that is not a keyword or a
  ``.hidden`` template) has a ``script`` of strings and a ``stage`` listed in ``stages``.
- commands: in every ``run`` / ``script``, each ``make TARGET`` names a Makefile target, and each
  ``lora-parity ...`` (or ``python -m parity.cli ...``) parses with the real parser: its verb exists
  and its options and values are accepted. The recipe's variables (``env:`` / ``variables:``) are
  substituted first, so ``--fail-on "$BENCH_GATE"`` is checked with the value the job will pass.
- artifacts: every uploaded path lies under reports/, in a folder the suite writes by default
  (``reports/<kind>``: found in the Makefile, tools/ and parity/) or one a step of the same job names.

Each function returns a list of problems (empty: none), so a test shows all of them at once.
"""

from __future__ import annotations

import io
import re
import shlex
from collections.abc import Iterable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
# top-level keys of a .gitlab-ci.yml that are not jobs
GITLAB_KEYWORDS = {"stages", "variables", "default", "include", "workflow", "image", "services", "before_script",
                   "after_script", "cache", "spec"}
SHELL_WORDS = {"if", "then", "else", "elif", "fi", "do", "done", "for", "while", "!", "[", "test", "{", "}"}
EXPRESSION = re.compile(r"\$\{\{.*?\}\}")  # ${{ github.event.inputs.x || 'full' }}


def makefile_targets(makefile: Path = REPO / "Makefile") -> set[str]:
    """The targets a Makefile defines (rule lines ``name: ...``, not variable assignments)."""
    targets = set()
    for line in makefile.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", line)
        if m and not line.startswith("\t"):
            targets |= {t for t in m.group(1).split() if not t.startswith(".")}
    return targets


def written_report_kinds(root: Path = REPO) -> set[str]:
    """The folders under reports/ the suite writes by default: every ``reports/<kind>`` its code names."""
    files = [root / "Makefile", *(root / "tools").glob("*.sh"), *(root / "parity").rglob("*.py")]
    return {kind for f in files for kind in re.findall(r"\breports/([A-Za-z0-9_-]+)", f.read_text())}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _substitute(text: str, variables: dict[str, str]) -> str:
    text = EXPRESSION.sub("EXPR", text)
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                  lambda m: variables.get(m.group(1), m.group(0)), text)


def simple_commands(script: str) -> list[list[str]]:
    """The shell's simple commands in ``script``: words split at ; && || | and newlines, redirections
    dropped (good enough for the one-line steps a recipe holds)."""
    lexer = shlex.shlex(script.replace("\\\n", " "), posix=True, punctuation_chars=";&|<>")
    lexer.whitespace = " \t\r"  # a newline ends a command, as in the shell
    lexer.wordchars += "$=:%/.,-~+*?[]{}@"
    lexer.commenters = "#"
    commands, current, redirect = [], [], False
    for token in list(lexer) + ["\n"]:
        if token in ("\n", ";", "&&", "||", "|", "&"):
            if current:
                commands.append(current)
            current, redirect = [], False
        elif set(token) <= set("<>"):
            redirect = True
        elif redirect:
            redirect = False
        else:
            current.append(token)
    return commands


def _cli_problem(argv: list[str]) -> str | None:
    from parity.cli import build_parser

    parser = build_parser()
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            parser.parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            return err.getvalue().strip() or f"exit {exc.code}"
    return None


def command_problems(script: str, targets: set[str], where: str, variables: dict[str, str] | None = None) -> list[str]:
    """What is wrong with the ``make`` and ``lora-parity`` commands a step runs."""
    problems = []
    for words in simple_commands(_substitute(script, variables or {})):
        while words and (words[0] in SHELL_WORDS or re.fullmatch(r"[A-Za-z_]\w*=.*", words[0])):
            words = words[1:]  # `if`, `then`, VAR=value before the command
        if not words:
            continue
        if words[0] == "make":
            named = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
            problems += [f"{where}: make {t}: no such target in the Makefile ({', '.join(sorted(targets))})"
                         for t in named if t not in targets]
        elif Path(words[0]).name == "lora-parity" or words[1:3] == ["-m", "parity.cli"]:
            argv = words[1:] if Path(words[0]).name == "lora-parity" else words[3:]
            problem = _cli_problem(argv)
            if problem:
                problems.append(f"{where}: {shlex.join(words)}: {problem}")
    return problems


def _upload_problems(paths: Iterable[str], job_text: str, kinds: set[str], where: str) -> list[str]:
    named = set(re.findall(r"\breports/([A-Za-z0-9_.-]+)", job_text))
    problems = []
    for path in paths:
        parts = Path(path.strip()).parts
        if not parts or parts[0] != "reports":
            problems.append(f"{where}: uploads {path!r}, which is not under reports/ (where the suite writes)")
        elif len(parts) > 1 and parts[1] not in kinds | named:
            problems.append(f"{where}: uploads {path!r}: nothing writes reports/{parts[1]} (the suite writes "
                            f"reports/{{{','.join(sorted(kinds))}}}; a step of the job may name another)")
    return problems


def _cron_problems(on: Any, where: str) -> list[str]:
    schedule = on.get("schedule", []) if isinstance(on, dict) else []
    return [f"{where}: cron {entry!r} is not five fields" for entry in schedule
            if not (isinstance(entry, dict) and re.fullmatch(r"(\S+\s+){4}\S+", str(entry.get("cron", "")).strip()))]


def github_problems(path: Path, targets: set[str] | None = None, kinds: set[str] | None = None) -> list[str]:
    targets = makefile_targets() if targets is None else targets
    kinds = written_report_kinds() if kinds is None else kinds
    doc = load(path)
    if not isinstance(doc, dict):
        return [f"{path.name}: not a mapping"]
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads the bare key `on` as True
    problems = [f"{path.name}: no {key}" for key, value in (("name", doc.get("name")), ("on", on),
                                                           ("jobs", doc.get("jobs"))) if not value]
    problems += _cron_problems(on, path.name)
    env = {k: str(v) for k, v in (doc.get("env") or {}).items()}
    for job_name, job in (doc.get("jobs") or {}).items():
        where = f"{path.name}: job {job_name}"
        if not isinstance(job, dict) or "runs-on" not in job or not job.get("steps"):
            problems.append(f"{where}: needs runs-on and steps")
            continue
        job_env = {**env, **{k: str(v) for k, v in (job.get("env") or {}).items()}}
        job_text = "\n".join(str(step.get("run", "")) for step in job["steps"] if isinstance(step, dict))
        for i, step in enumerate(job["steps"], 1):
            at = f"{where}: step {i} ({step.get('name', '')})" if isinstance(step, dict) else f"{where}: step {i}"
            if not isinstance(step, dict) or ("run" in step) == ("uses" in step):
                problems.append(f"{at}: needs exactly one of run and uses")
                continue
            if "run" in step:
                step_env = {**job_env, **{k: str(v) for k, v in (step.get("env") or {}).items()}}
                problems += command_problems(str(step["run"]), targets, at, step_env)
            elif "@" not in step["uses"]:
                problems.append(f"{at}: {step['uses']} is not pinned to a version (@v4)")
            elif step["uses"].startswith("actions/upload-artifact@"):
                paths = str((step.get("with") or {}).get("path", "")).split("\n")
                problems += _upload_problems([p for p in paths if p.strip()], job_text, kinds, at)
    return problems


def gitlab_jobs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc.items() if k not in GITLAB_KEYWORDS and not str(k).startswith(".")}


def gitlab_problems(path: Path, targets: set[str] | None = None, kinds: set[str] | None = None) -> list[str]:
    targets = makefile_targets() if targets is None else targets
    kinds = written_report_kinds() if kinds is None else kinds
    doc = load(path)
    if not isinstance(doc, dict):
        return [f"{path.name}: not a mapping"]
    stages = doc.get("stages") or ["build", "test", "deploy"]  # GitLab's defaults
    variables = {k: str(v) for k, v in (doc.get("variables") or {}).items()}
    problems = []
    jobs = gitlab_jobs(doc)
    if not jobs:
        problems.append(f"{path.name}: no jobs")
    for name, job in jobs.items():
        where = f"{path.name}: job {name}"
        script = job.get("script") if isinstance(job, dict) else None
        if not isinstance(script, list) or not script or not all(isinstance(line, str) for line in script):
            problems.append(f"{where}: needs a script (a list of command lines)")
            continue
        if job.get("stage", "test") not in stages:
            problems.append(f"{where}: stage {job.get('stage')!r} is not in stages {stages}")
        job_vars = {**variables, **{k: str(v) for k, v in (job.get("variables") or {}).items()}}
        lines = [*job.get("before_script", []), *script]
        for line in lines:
            problems += command_problems(line, targets, where, job_vars)
        artifacts = job.get("artifacts") or {}
        paths = list(artifacts.get("paths", [])) + list((artifacts.get("reports") or {}).values())
        problems += _upload_problems([str(p) for p in paths], "\n".join(lines), kinds, where)
    return problems


def steps_running(doc: dict[str, Any], pattern: str) -> list[str]:
    """GitHub: the job names whose run steps match ``pattern`` (a regex)."""
    return [name for name, job in (doc.get("jobs") or {}).items()
            if any(re.search(pattern, str(step.get("run", ""))) for step in job.get("steps", []))]
