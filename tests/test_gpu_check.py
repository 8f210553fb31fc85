"""tools/gpu_check.py, the one-command GPU check, rehearsed without a GPU.

The rehearsal (``--simulate``) runs every phase on the CUDA simulator at a tiny size, as
the real check runs them on a GPU; the other tests make phases fail or run out of time
with a stand-in python, and check that the report records that and the other phases
still run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.py"
PHASES = ["setup", "device", "tests", "bench"]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _load()


def run(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full = {**os.environ, "NUMBA_NUM_THREADS": "1", **(env or {})}
    full.pop("VGC_PARSE_ONLY", None)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def report_of(out: Path) -> dict:
    return json.loads((out / "gpu-report.json").read_text())


def test_the_rehearsal_runs_every_phase_and_writes_the_report(tmp_path):
    """--simulate --skip-setup: device, the gpu tests and the bench rows all run; report and summary agree."""
    out = tmp_path / "report"
    done = run("--simulate", "--skip-setup", "--venv", sys.prefix, "--size", "48", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = report_of(out)
    assert report["schema"] == gpu_check.SCHEMA and report["rehearsal"] is True
    assert report["passed"] is True and report["exit_status"] == 0
    assert list(report["phases"]) == PHASES
    assert report["options"]["size"] == 48 and report["environment"]["NUMBA_ENABLE_CUDASIM"] == "1"
    for name, phase in report["phases"].items():
        assert phase["status"] == ("skipped" if name == "setup" else "passed"), (name, phase)
        assert phase["seconds"] >= 0 and phase["limit_s"] == gpu_check.LIMITS[name]
        assert (out / phase["log"]).is_file()
    assert report["phases"]["setup"]["python"] == str(Path(sys.prefix) / "bin" / "python")
    gpu = report["phases"]["device"]["gpu"]
    assert gpu["simulator"] is True and gpu["compute_capability"] and gpu["name"]
    tests = report["phases"]["tests"]
    # Every gpu test was collected and, on the simulator, skipped with its reason.
    assert tests["counts"]["tests"] > 0 and tests["counts"]["failed"] == tests["counts"]["errors"] == 0
    assert tests["counts"]["skipped"] == tests["counts"]["tests"] == len(tests["skipped"])
    skipped = " ".join(s["test"] for s in tests["skipped"])
    assert "test_compressor_on_device_states_gives_the_references_messages" in skipped
    assert "test_the_cuda_backend_runs_on_a_real_gpu" in skipped
    bench = report["phases"]["bench"]
    assert bench["n"] == 48
    ops = [r["op"].split()[0] for r in bench["rows"]]
    assert ops == ["device", "vgc_step", "hybrid", "strom_step", "decode_accumulate", "dense_grad_var"]
    steps = [r for r in bench["rows"] if "checked" in r]
    assert len(steps) == 4 and all(r["checked"] is True for r in steps)
    # The bytes per element of docs/performance.md: 40 + 12 f (VGC), 20 + 12 f (Strom).
    for r in steps[:3]:
        base = 20 if r["op"] == "strom_step" else 40
        assert r["hbm_bytes_per_element"] == pytest.approx(base + 12 * r["sent"])
        assert r["device_gb_per_s"] > 0 and r["share_of_peak"] is None  # no peak on the simulator
    summary = (out / "gpu-summary.txt").read_text()
    assert summary == done.stdout and "REHEARSAL" in summary and "overall: PASSED" in summary


def _stand_in_python(tmp_path: Path, body: str) -> Path:
    """A venv whose bin/python is a shell script (``body``), to make phases fail."""
    exe = tmp_path / "venv" / "bin" / "python"
    exe.parent.mkdir(parents=True)
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(0o755)
    return tmp_path / "venv"


def test_a_failing_phase_is_recorded_and_the_others_still_run(tmp_path):
    """A python that exits 3: device, tests and bench each fail on their own; report written, exit 1."""
    venv = _stand_in_python(tmp_path, "echo broken python >&2; exit 3")
    out = tmp_path / "report"
    done = run("--skip-setup", "--venv", str(venv), "--out", str(out), timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    report = report_of(out)
    assert report["rehearsal"] is False and report["passed"] is False and report["exit_status"] == 1
    statuses = {name: p["status"] for name, p in report["phases"].items()}
    assert statuses == {"setup": "skipped", "device": "failed", "tests": "failed", "bench": "failed"}
    assert "exit 3" in report["phases"]["device"]["detail"]
    assert "broken python" in (out / "bench.log").read_text()
    assert "overall: FAILED" in (out / "gpu-summary.txt").read_text()


def test_a_phase_past_its_time_limit_is_stopped_and_the_next_runs(tmp_path):
    """A python that hangs: each phase is killed at its --limit and recorded as timed out."""
    venv = _stand_in_python(tmp_path, "sleep 60")
    out = tmp_path / "report"
    limits = ["--limit", "device=1", "--limit", "tests=1", "--limit", "bench=1"]
    done = run("--skip-setup", "--venv", str(venv), "--out", str(out), *limits, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    report = report_of(out)
    for name in ("device", "tests", "bench"):
        phase = report["phases"][name]
        assert phase["status"] == "timed out" and phase["limit_s"] == 1
        assert phase["seconds"] < 30
    assert report["seconds"] < 40


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "{file}"], "--out {file}: exists and is not a directory"),
        (["--out", "{file}/sub"], "is not a directory"),
        (["--size", "0"], "must be in 1 .. 2^27"),
        (["--size", "2^28"], "must be in 1 .. 2^27"),
        (["--limit", "bench"], "give PHASE=SECONDS"),
        (["--limit", "warmup=5"], "the phase must be one of"),
        (["--repeats", "0"], "must be >= 1"),
    ],
)
def test_bad_arguments_are_refused_with_one_line_and_exit_2(tmp_path, args, message):
    """An unusable --out (a file, a path under a file) or a bad option: exit 2 before any work."""
    file = tmp_path / "a-file"
    file.write_text("x")
    args = [a.format(file=file) for a in args]
    done = run(*args, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: error:")
    assert message.format(file=file) in lines[0]
    assert not (tmp_path / "gpu-report").exists()


def test_the_wrapper_passes_arguments_and_exit_status_through(tmp_path):
    """tools/gpu_check.sh: the script's exit 2 for a bad --out; exit 2 naming PYTHON when it is unusable."""
    file = tmp_path / "a-file"
    file.write_text("x")
    wrapper = str(ROOT / "tools" / "gpu_check.sh")
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("VGC_PARSE_ONLY", None)
    done = subprocess.run(
        ["bash", wrapper, "--out", str(file)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "gpu_check: error: --out" in done.stderr
    env["PYTHON"] = str(tmp_path / "no-such-python")
    done = subprocess.run(["bash", wrapper, "--out", str(tmp_path)], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "no-such-python is not a Python 3.10" in done.stderr


def test_it_parses_its_arguments_where_numpy_is_not_installed_yet(tmp_path):
    """On a bare machine the setup phase installs NumPy: the script itself must start without it."""
    blocker = tmp_path / "numpy"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('no numpy here')\n")
    env = {"PYTHONPATH": str(tmp_path), "VGC_PARSE_ONLY": "1"}
    full = {**os.environ, **env}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "r")], env=full, capture_output=True, text=True
    )
    assert done.returncode == 0 and "arguments parsed" in done.stdout, done.stderr[-2000:]
    done = run("--version", env={"PYTHONPATH": str(tmp_path)}, timeout=60)
    assert done.returncode == 0 and "vgc_ref" in done.stdout, done.stderr[-2000:]


def _junit(tmp_path: Path, cases: str) -> Path:
    path = tmp_path / "j.xml"
    path.write_text(f'<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>')
    return path


def test_junit_results_count_each_outcome(tmp_path):
    """Each outcome is counted and named; a module skipped while collecting is listed apart."""
    path = _junit(
        tmp_path,
        '<testcase classname="tests.a" name="ok"/>'
        '<testcase classname="tests.a" name="bad"><failure message="assert 1 == 2"/></testcase>'
        '<testcase classname="tests.b" name="boom"><error message="fixture failed"/></testcase>'
        '<testcase classname="tests.b" name="later"><skipped message="no GPU"/></testcase>'
        '<testcase classname="" name="tests.test_t"><skipped message="collection skipped">'
        "('tests/test_t.py', 15, 'Skipped: needs torch')</skipped></testcase>",
    )
    counts, failed, skipped, modules = gpu_check.junit_results(path)
    assert counts == {"tests": 4, "passed": 1, "failed": 1, "errors": 1, "skipped": 1, "modules_skipped": 1}
    assert modules == [{"module": "tests.test_t", "reason": "needs torch"}]
    assert [f["test"] for f in failed] == ["tests.a::bad", "tests.b::boom"]
    assert failed[0]["message"] == "assert 1 == 2"
    assert skipped == [{"test": "tests.b::later", "reason": "no GPU"}]


@pytest.mark.parametrize(
    "driver, wheels",
    [("580.65.06", "cu13"), ("590.10", "cu13"), ("575.57.08", "cu12"), ("535.104.05", "cu12")],
)
def test_the_cuda_wheels_follow_the_driver(driver, wheels):
    """numba-cuda[cu13] from driver 580 on (CUDA 13's oldest), [cu12] before; an explicit choice wins."""
    smi = {"gpus": [{"name": "X", "driver_version": driver}]}
    assert gpu_check._wheels("auto", smi)[0] == wheels
    assert gpu_check._wheels("cu12", smi)[0] == "cu12"
    assert gpu_check._wheels("auto", None)[0] == "cu13"
