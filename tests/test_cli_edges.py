"""The package's commands at their edges: a bad argument or an unusable file ends before any
work with exit status 2 and one line on stderr that names it; every command has --version.

Each is run in a subprocess, as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vgc_ref import __version__

ROOT = Path(__file__).resolve().parents[1]


def command(module: str, *args: str, code: str | None = None, timeout: int = 120):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def assert_usage_error(done: subprocess.CompletedProcess, prog: str, *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"python -m {prog}"), lines[0]
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def commands() -> list[tuple[str, ...]]:
    """Every command of the repository, found from the files: each package with a
    ``__main__.py`` and each module with a ``__main__`` block (run with ``-m``), and each
    such script under examples/, tools/ and tests/golden/ (run as a file). The test
    harness's own workers (tests/*_worker.py, tests/wrong_impls/) are not commands."""
    import importlib.util

    has_torch = importlib.util.find_spec("torch") is not None
    found: list[tuple[str, ...]] = []
    for package in ("vgc_ref", "mpi_demo"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            if path.name == "__main__.py":
                found.append(("-m", ".".join(path.parent.relative_to(ROOT).parts)))
            elif 'if __name__ == "__main__"' in text:
                module = ".".join(path.with_suffix("").relative_to(ROOT).parts)
                if module.startswith("vgc_ref.torch.") and not has_torch:
                    continue  # the torch extra is not installed (make test TORCH=)
                found.append(("-m", module))
    for folder in ("examples", "tools", "tests/golden"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if 'if __name__ == "__main__"' in path.read_text(encoding="utf-8"):
                found.append((str(path.relative_to(ROOT)),))
    return found


@pytest.mark.parametrize("cmd", commands(), ids=lambda c: c[-1])
def test_every_command_answers_version(cmd):
    """``--version`` prints vgc_ref's version and exits 0, before any heavy import or work."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, *cmd, "--version"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert f"vgc_ref {__version__}" in done.stdout, done.stdout


def test_the_command_list_finds_the_known_commands():
    """The discovery above is not vacuous: it finds the commands the docs name."""
    names = {c[-1] for c in commands()}
    for known in (
        "vgc_ref",
        "vgc_ref.bench",
        "vgc_ref.conformance",
        "mpi_demo",
        "mpi_demo.costcheck",
        "vgc_ref.conformance.table",
        "mpi_demo.varcost",
        "examples/ddp_mnist1d.py",
    ):
        assert known in names, (known, sorted(names))


# --------------------------------------------------------------------------------------
# vgc_ref.bench: nothing is timed (no "# measured" line) when an argument is bad
# --------------------------------------------------------------------------------------

BENCH_CASES = [
    (["--n", "-1"], ["--n -1", "10 .. 27"]),
    (["--n", "0"], ["--n 0"]),
    (["--n", "9"], ["--n 9"]),
    (["--n", "40"], ["--n 40"]),
    (["--backends", "foo"], ["--backends 'foo'", "unknown 'foo'"]),
    (["--backends", ""], ["--backends ''", "empty"]),
    (["--json", "/nonexistent/dir/b.json"], ["--json", "does not exist"]),
    (["--n", "x"], ["argument --n"]),
    (["--ordered", "--step"], ["--ordered and --step", "choose one"]),
]


@pytest.mark.parametrize("args,fragments", BENCH_CASES, ids=[" ".join(a) or "''" for a, _ in BENCH_CASES])
def test_bench_refuses_bad_arguments_before_timing(args, fragments):
    done = command("vgc_ref.bench", "--quick", *args)
    assert_usage_error(done, "vgc_ref.bench", *fragments)
    assert done.stdout == ""


def test_bench_json_that_is_a_directory_is_refused(tmp_path):
    done = command("vgc_ref.bench", "--quick", "--json", str(tmp_path))
    assert_usage_error(done, "vgc_ref.bench", "--json", "is a directory")


@pytest.mark.slow
def test_bench_reports_each_measurement_as_it_goes(tmp_path):
    """A line on stderr per row of the table; the JSON is written where --json says."""
    out = tmp_path / "b.json"
    done = command("vgc_ref.bench", "--quick", "--n", "10", "--backends", "numpy", "--json", str(out))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    measured = [line for line in done.stderr.splitlines() if line.startswith("# measured ")]
    assert len(measured) == len(rows)
    assert all(f"# measured {r['op']} ({r['backend']})" in m for r, m in zip(rows, measured))


def test_bench_refuses_a_segment_larger_than_the_memory(monkeypatch, capsys):
    from vgc_ref import bench

    monkeypatch.setattr(bench, "memory_available", lambda: 2**30)
    with pytest.raises(SystemExit) as info:
        bench.main(["--quick", "--n", "27"])
    assert info.value.code == 2
    assert "GiB of memory" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# vgc_ref.vectors
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """Every case, exported once for this module (the 2^27 case is stored sparsely: quick)."""
    root = tmp_path_factory.mktemp("vectors") / "v"
    done = command("vgc_ref.vectors", "export", str(root))
    assert done.returncode == 0, done.stderr
    return root


@pytest.mark.parametrize("sub", ["check", "run"])
def test_vectors_on_a_missing_or_empty_directory(tmp_path, sub):
    done = command("vgc_ref.vectors", sub, str(tmp_path / "nope"))
    assert_usage_error(done, "vgc_ref.vectors", "no such directory")
    done = command("vgc_ref.vectors", sub, str(tmp_path))
    assert_usage_error(done, "vgc_ref.vectors", "no index.json")


def test_vectors_export_to_a_file_or_an_unwritable_place(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert_usage_error(command("vgc_ref.vectors", "export", str(f)), "vgc_ref.vectors", "not a directory")
    done = command("vgc_ref.vectors", "export", "/proc/vgc_ref_vectors")
    assert_usage_error(done, "vgc_ref.vectors", "/proc/vgc_ref_vectors", "cannot write")


def test_vectors_run_with_an_unknown_implementation(exported):
    done = command("vgc_ref.vectors", "run", str(exported), "--impl", "no.such.module", "--case", "decode")
    assert_usage_error(done, "vgc_ref.vectors", "--impl 'no.such.module'")
    assert not (exported / "decode" / "out").exists()


def test_vectors_unknown_case_names_it(exported):
    done = command("vgc_ref.vectors", "check", str(exported), "--case", "nope")
    assert_usage_error(done, "vgc_ref.vectors", "--case nope")


def test_vectors_corrupt_index_is_unusable(exported, tmp_path):
    import shutil

    root = tmp_path / "v"
    shutil.copytree(exported, root)
    (root / "index.json").write_text("{not json")
    for sub in ("check", "run"):
        assert_usage_error(command("vgc_ref.vectors", sub, str(root)), "vgc_ref.vectors", "index.json")
    (root / "index.json").write_text(json.dumps({"format": "other", "version": 1}))
    assert_usage_error(command("vgc_ref.vectors", "check", str(root)), "vgc_ref.vectors", "not vgc_ref")


def test_vectors_corrupt_case_file_is_unusable_before_any_case_runs(exported, tmp_path):
    import shutil

    root = tmp_path / "v"
    shutil.copytree(exported, root)
    (root / "random_steps" / "case.json").write_text(json.dumps({"kind": "steps", "sparse": False}))
    done = command("vgc_ref.vectors", "run", str(root))
    assert_usage_error(done, "vgc_ref.vectors", "random_steps", "case.json")
    assert not any(root.glob("*/out"))


def test_vectors_corrupt_output_json_fails_that_case(exported, tmp_path):
    """An implementation's unreadable out/*.json is its failure (exit 1), named, not a traceback."""
    import shutil

    root = tmp_path / "v"
    shutil.copytree(exported, root)
    assert command("vgc_ref.vectors", "run", str(root), "--case", "decode").returncode == 0
    (root / "decode" / "out" / "valid.json").write_bytes(b"\xff\xfe")
    done = command("vgc_ref.vectors", "check", str(root), "--case", "decode")
    assert done.returncode == 1, done.stderr
    assert "FAIL  decode: valid.json: not valid JSON" in done.stdout


def test_vectors_run_streams_the_steps(exported, monkeypatch):
    """run reads a step's inputs only when the step before it has been run and written."""
    from vgc_ref import vectors

    events = []
    read = vectors._read_array

    def spy_read(base, n, sparse):
        events.append(("read", base.parent.name))
        return read(base, n, sparse)

    write = vectors._write_step_outputs

    def spy_write(root, segments, steps, sparse):
        def tagged():
            for t, item in enumerate(steps):
                yield item
                events.append(("written", f"step{t}"))

        write(root, segments, tagged(), sparse)

    monkeypatch.setattr(vectors, "_read_array", spy_read)
    monkeypatch.setattr(vectors, "_write_step_outputs", spy_write)
    assert vectors.run_impl(exported, "vgc_ref", ["random_steps"]) == 0
    first_write = events.index(("written", "step0"))
    assert {name for _, name in events[:first_write]} == {"step0"}
    assert ("read", "step1") in events[first_write:]


# --------------------------------------------------------------------------------------
# vgc_ref.conformance
# --------------------------------------------------------------------------------------


def test_conformance_report_path_is_checked_before_the_suite(tmp_path):
    report = tmp_path / "missing" / "r.json"
    done = command("vgc_ref.conformance", "--report", str(report))
    assert_usage_error(done, "vgc_ref.conformance", "--report", "does not exist")
    assert done.stdout == ""  # no property ran


def test_conformance_without_pytest_says_what_to_install():
    code = (
        "import sys; sys.modules['pytest'] = None; sys.modules['hypothesis'] = None\n"
        "from vgc_ref.conformance.__main__ import main; sys.exit(main(sys.argv[1:]))"
    )
    done = command("", code=code)
    assert_usage_error(done, "vgc_ref.conformance", "pytest and hypothesis", "vgc_ref[test]")


def test_the_installed_metadata_has_the_one_version_and_an_spdx_license():
    """pyproject.toml reads the version from vgc_ref/_version.py; the license is an SPDX expression."""
    from importlib.metadata import metadata

    meta = metadata("vgc_ref")
    assert meta["Version"] == __version__
    assert meta["License-Expression"] == "MIT"


def test_vectors_run_reports_an_implementation_that_raises_and_goes_on(exported, tmp_path):
    """Exit 1 (a failure of the implementation, not of the files), one line per case; other cases run."""
    import shutil

    root = tmp_path / "v"
    shutil.copytree(exported, root)
    impl = tmp_path / "raising_impl.py"
    impl.write_text(
        "from vgc_ref import decode_accumulate, decode_message, dense_grad_var, encode_message, strom_step\n"
        "def vgc_step(state, g, s, params):\n"
        "    raise RuntimeError('not written yet')\n"
    )
    done = command("vgc_ref.vectors", "run", str(root), "--impl", str(impl))
    assert done.returncode == 1, done.stderr
    assert "error random_steps: the implementation raised RuntimeError: not written yet" in done.stdout
    assert "ran   decode" in done.stdout
    assert "Traceback" not in done.stderr
