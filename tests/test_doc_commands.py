"""Every command that README.md, docs/ and the examples' READMEs show still exists as written.

The commands are read from the files: each line of a code block (fenced, or indented by
four spaces) and each inline code span that starts with a command (``python``, ``make``,
``mpiexec`` ...; a continuation ``\\`` joins lines; ``# ...`` comments and a ``$ `` prompt
are dropped; ``cd DIR`` applies to the block's next lines). Then, per command:

- a command of this project (``python -m vgc_ref...``, ``python -m mpi_demo...``, a script
  under examples/, tools/ or tests/) runs with ``VGC_PARSE_ONLY=1``: it parses its
  arguments and exits 0 (``vgc_ref._cli.ArgumentParser``). A renamed module, sub-command
  or option fails here. Launchers in front (``mpiexec -n 4``, ``srun``, ``torchrun``,
  ``python -m mpi4py``) and environment assignments are kept out of the parse;
- ``make TARGET ...`` runs as ``make -n`` (nothing runs; the target must exist), and every
  project command its recipe would run is parsed as above;
- the rest is named in SKIPPED with the reason (installers, git, the C driver, which
  tests/test_c_port.py runs), and a command of any other kind fails the test, so a new kind
  of command gets a decision.

Commands that run for real, quickly, are in :func:`test_quick_commands_run_as_documented`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "examples").glob("**/README.md")),
]

#: How a command line starts (after environment assignments).
HEAD = re.compile(
    r"^(?:\$ )?(?:[A-Z][A-Z0-9_]*=\S*\s+)*"
    r"(?:env\s|(?:\S*/)?(?:python3?|mpiexec|srun|torchrun|make|pip|git|module|cd)\b|build/)"
)
#: Inline code spans that are commands.
INLINE = re.compile(r"`((?:[A-Z][A-Z0-9_]*=\S+ )*(?:\.venv/bin/)?(?:python3?|make) [^`]+)`")
#: Placeholders the docs use in commands, and a value that parses in their place.
PLACEHOLDERS = {"NAME": "numba-cpu", "DIR": "dir", "N": "3", "MODULE": "vgc_ref", "PATH": "x.jsonl"}
#: Heads of commands that are not checked here, with the reason.
SKIPPED = {
    "pip": "installs packages (CI's own set-up does this)",
    "git": "fetches the repository",
    "module": "a cluster's environment modules",
    "build/vectors_driver": "the C port's driver (tests/test_c_port.py builds and runs it)",
    "-m pip": "installs packages",
    "-m build": "builds the wheel (make dist; tests/test_packaging.py checks what it holds)",
    "-m pytest": "the test runner itself",
}
LAUNCHERS = {"mpiexec", "srun", "torchrun"}
PYTHONS = {"python", "python3"}


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    text: str
    cwd: Path
    inline: bool = False  # a code span in prose


def _lines_of(path: Path):
    """(line number, text, inline) of every candidate command line in ``path``."""
    text = path.read_text(encoding="utf-8")
    in_fence, fence_lang, pending, start = False, "", "", 0
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            in_fence, fence_lang = (not in_fence), stripped[3:].strip()
            continue
        code = (in_fence and fence_lang not in ("python", "json")) or (
            not in_fence and line.startswith("    ") and stripped
        )
        if not code:
            continue
        if pending:
            pending += " " + stripped
        else:
            pending, start = stripped, n
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        yield start, pending, False
        pending = ""
    for m in INLINE.finditer(text):
        yield text.count("\n", 0, m.start()) + 1, " ".join(m.group(1).split()), True


def doc_commands() -> list[Command]:
    found: list[Command] = []
    for path in DOCS:
        cwd = ROOT  # commands run from the checkout's root unless a `cd` says otherwise
        for n, line, inline in _lines_of(path):
            line = line.removeprefix("$ ")
            if not HEAD.match(line) or ": error" in line:
                continue  # not a command, or a command's printed refusal
            if inline and (re.search(r"\[|\||\.\.\.|\bA B\b", line)):
                continue  # a syntax summary in prose, not a command
            words = shlex.split(line, comments=True)
            if words[:1] == ["cd"]:
                cwd = (cwd / words[1]).resolve()
                continue
            found.append(Command(f"{path.relative_to(ROOT)}:{n}", line, cwd, inline))
    return found


def _split(text: str) -> tuple[dict[str, str | None], list[str]]:
    """Environment changes and the argument vector of a command line (``env -u`` unsets)."""
    words = shlex.split(re.sub(r"\$\([^)]*\)", "x", text), comments=True)  # $(which mpicc): a word
    env: dict[str, str | None] = {}
    while words:
        if re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", words[0]):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        elif words[0] == "env":
            words.pop(0)
            while words and words[0] == "-u":
                words.pop(0)
                env[words.pop(0)] = None
        else:
            break
    return env, [PLACEHOLDERS.get(w, w) for w in words]


def _python_part(argv: list[str]) -> list[str] | None:
    """The ``python ...`` part of a launcher's command line (None when there is none)."""
    for i, word in enumerate(argv):
        if Path(word).name in PYTHONS:
            rest = argv[i + 1 :]
            if rest[:2] == ["-m", "mpi4py"]:
                rest = rest[2:]
            return rest
        if word.endswith(".py") and i > 0 and Path(argv[0]).name == "torchrun":
            return argv[i:]
    return None


def classify(cmd: Command) -> tuple[str, object]:
    """("parse", (env, argv)), ("make", argv), ("skip", reason) or ("unknown", why)."""
    env, argv = _split(cmd.text)
    if not argv:
        return "unknown", "no command after the environment"
    head = Path(argv[0]).name
    if argv[0].startswith("build/"):
        return "skip", SKIPPED["build/vectors_driver"]
    if head in SKIPPED:
        return "skip", SKIPPED[head]
    if head == "make":
        return "make", (env, argv)
    if head in LAUNCHERS or head in PYTHONS:
        rest = _python_part(argv)
        if rest is None:
            return "unknown", "a launcher without python"
        if rest[:1] == ["-m"]:
            module = rest[1]
            if f"-m {module}" in SKIPPED:
                return "skip", SKIPPED[f"-m {module}"]
            if module.split(".")[0] in ("vgc_ref", "mpi_demo"):
                return "parse", (env, ["-m", *rest[1:]])
            return "unknown", f"python -m {module}: not a module of this project"
        if rest and rest[0].endswith(".py"):
            return "parse", (env, rest)
        return "unknown", "python without a module or script"
    return "unknown", f"unknown command {argv[0]!r}"


COMMANDS = doc_commands()
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _environment(env: dict[str, str | None]) -> dict[str, str]:
    out = {**os.environ, "VGC_PARSE_ONLY": "1", "PYTHONPATH": str(ROOT)}
    for key, value in env.items():
        if value is None:
            out.pop(key, None)
        elif key != "PYTHONPATH":
            out[key] = value
    return out


def _parse(env, argv, cwd: Path, where: str, inline: bool = False) -> None:
    """Run the command with VGC_PARSE_ONLY=1: it must parse its arguments and exit 0.

    ``--help`` prints the usage and exits 0 before that; a bare ``python -m MODULE`` (prose
    naming a command) is asked for ``--version``, and prose naming a sub-command
    (``python -m mpi_demo compare``) for the sub-command's ``--help``. A script is run only if it honours
    VGC_PARSE_ONLY (one that did not would do its work here)."""
    if argv[0].endswith(".py"):
        source = (cwd / argv[0]).read_text(encoding="utf-8")
        assert "vgc_ref._cli" in source or "VGC_PARSE_ONLY" in source, (
            f"{where}: {argv[0]} does not honour VGC_PARSE_ONLY; use vgc_ref._cli.ArgumentParser"
        )
    bare = argv[0] == "-m" and len(argv) == 2
    named = inline and argv[0] == "-m" and len(argv) > 2 and not any(w.startswith("-") for w in argv[2:])
    extra = ["--version"] if bare else ["--help"] if named else []
    done = subprocess.run(
        [sys.executable, *argv, *extra],
        cwd=cwd,
        env=_environment(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "--help" in argv or "-h" in argv or named:
        assert done.returncode == 0 and done.stdout.startswith("usage:"), (where, done.stderr[-800:])
        return
    if bare:
        assert done.returncode == 0 and "vgc_ref" in done.stdout, (where, done.stderr[-800:])
        return
    assert done.returncode == 0 and "arguments parsed" in done.stdout, (
        f"{where}: {' '.join(argv)}\n  exit {done.returncode}\n  {done.stdout[-400:]}{done.stderr[-800:]}"
    )


def test_the_docs_show_commands_of_every_kind():
    """The extraction is not vacuous: it finds the README's two commands, a module run
    under mpiexec, and commands in docs/ and in the examples' READMEs."""
    texts = [c.text for c in COMMANDS]
    assert any(t.startswith("make demo") for t in texts)
    assert any(t.startswith("make test") for t in texts)
    assert any("mpiexec -n 4" in t and "mpi_demo train" in t for t in texts)
    files = {c.where.split(":")[0] for c in COMMANDS}
    assert files >= {"README.md", "docs/conformance.md", "examples/c/README.md"}
    assert sum(classify(c)[0] == "parse" for c in COMMANDS) >= 40


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.where)
def test_documented_command_exists_as_written(cmd: Command):
    kind, what = classify(cmd)
    if kind == "skip":
        pytest.skip(f"{cmd.text}: {what}")
    assert kind != "unknown", f"{cmd.where}: {cmd.text}: {what}; decide how this file checks it"
    if kind == "parse":
        env, argv = what
        if argv[0] == "-m" and argv[1].startswith("vgc_ref.torch") and not HAS_TORCH:
            pytest.skip(f"{cmd.text}: needs the torch extra, which is not installed")
        _parse(env, argv, cmd.cwd, cmd.where, cmd.inline)
        return
    env, argv = what
    # Prose in examples/c/README.md names the port's targets and the checkout's `make test`.
    for cwd in [cmd.cwd, ROOT] if cmd.inline else [cmd.cwd]:
        dry = ["make", "-n", *argv[1:]]
        done = subprocess.run(dry, cwd=cwd, env=_environment(env), capture_output=True, text=True, timeout=99)
        if done.returncode == 0:
            break
    assert done.returncode == 0, f"{cmd.where}: make -n {' '.join(argv[1:])}: {done.stderr[-600:]}"
    for line in done.stdout.splitlines():
        if not HEAD.match(line.strip()):
            continue
        sub = Command(cmd.where + " (recipe)", line.strip(), cmd.cwd)
        try:
            sub_kind, sub_what = classify(sub)
        except ValueError:  # a shell loop or a continued line of the recipe: not one command
            continue
        if sub_kind == "parse":
            _parse(*sub_what, cmd.cwd, sub.where)


def _run(*argv: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": "1"}
    env.pop("VGC_PARSE_ONLY", None)
    cmd = [sys.executable, *argv]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_quick_commands_run_as_documented(tmp_path):
    """The quick commands of docs/demo.md's trace example run for real and print what the
    page shows, and the kit's case list and the cost model's example answer."""
    demo = (ROOT / "docs" / "demo.md").read_text()
    shown = re.search(r"^\$ python -m mpi_demo compare a\.jsonl b\.jsonl\n(.*?)\n```", demo, re.M | re.S)
    assert shown, "docs/demo.md: the compare example moved; update this test"
    for line in re.findall(r"^\$ python (-m mpi_demo train .* --trace [ab]\.jsonl)$", demo, re.M):
        done = _run(*shlex.split(line), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-800:]
    assert (tmp_path / "a.jsonl").exists() and (tmp_path / "b.jsonl").exists()
    done = _run("-m", "mpi_demo", "compare", "a.jsonl", "b.jsonl", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stdout.strip() == shown.group(1).strip()
    listed = _run("-m", "vgc_ref.conformance.table", "--list", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.count("\n") > 1000, listed.stderr[-400:]
