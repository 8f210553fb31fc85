#!/usr/bin/env python3
"""Check the numba-cuda backend end to end on a machine with an NVIDIA GPU, in one command.

    bash tools/gpu_check.sh --out gpu-report
    python3 tools/gpu_check.py --out gpu-report      # the same, without the wrapper

Nothing needs to be prepared but this checkout and a Python 3.10+ with ``venv``. The check
runs four phases, each in its own process with its own time limit (``--limit
PHASE=SECONDS``; the defaults add up to 9.5 minutes). A phase that fails or runs out of
time is recorded, and the next phase still runs:

1. **setup**: a venv (``--venv``, default ``.venv-gpu`` in the checkout, or $VGC_GPU_VENV)
   with ``pip install -e '.[test,cuda]'`` (``numba-cuda[cu12]`` instead of the ``cuda``
   extra where the driver is older than CUDA 13's, 580). A venv that already imports
   numpy, numba, numba-cuda, pytest and hypothesis is used as it is, so a venv carried to
   the machine needs no package index. ``--skip-setup`` installs nothing: the phases run
   with the venv's python if it exists, else with the python running this script.
2. **device**: the GPU as numba.cuda sees it (name, compute capability, memory, the
   driver's and the runtime's CUDA versions, the theoretical memory bandwidth from the
   memory clock and bus width) and, where present, ``nvidia-smi``'s line for it.
3. **tests**: ``pytest -m gpu tests`` with the CUDA simulator off: every test marked
   ``gpu``; pass, fail, error and skip counts from pytest's JUnit XML. On a GPU a
   skipped gpu test counts as a failure (it did not run).
4. **bench**: :func:`vgc_ref.backends.cuda_bench.cuda_rows` at ``--size`` elements (the
   device-resident rows of ``python -m vgc_ref.bench``): per kernel the result checked
   against the NumPy reference, then its time, the bytes per element that
   docs/performance.md counts, GB/s, and the share of a device-to-device copy and of the
   theoretical peak.

It writes ``DIR/gpu-report.json`` (schema ``vgc_ref.gpu_check/1``, below),
``DIR/gpu-summary.txt`` (also printed) and one log per phase (``DIR/setup.log`` ...).
Exit status: 0 only when every phase passed (setup may be skipped), 1 otherwise, 2 for a
bad argument or an unusable ``--out`` (before any work).

``--simulate`` rehearses the whole check without a GPU: ``NUMBA_ENABLE_CUDASIM=1``, a
tiny size (64 elements unless ``--size`` says otherwise), the numba-cuda extra not
installed; the gpu tests then skip (they need a real GPU), the bench's times mean
nothing, and the report says ``"rehearsal": true``. tests/test_gpu_check.py runs it in CI.

The report: ``schema``, ``rehearsal``, ``passed``, ``exit_status``, ``started``,
``finished``, ``seconds``, ``argv``, ``checkout`` (version, git commit, whether the
tree had changes), ``host`` (platform, python, CPUs), ``options`` (size, repeats, venv,
limits), ``environment`` (the NUMBA_*, VGC_* and CUDA_* variables the phases saw) and
``phases``: for each of setup, device, tests, bench a ``status`` ("passed", "failed",
"timed out" or "skipped"), ``seconds``, ``limit_s``, ``log``, ``detail`` (one line), plus
``python`` (setup), ``gpu`` (device), ``counts``, ``failed`` and ``skipped`` (tests),
``n``, ``peak_gb_per_s`` and ``rows`` (bench).

The script itself uses only the standard library (the setup phase is what installs
NumPy and Numba); the device and bench phases run this file again as a worker
(``--worker``) in the venv's python.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "vgc_ref.gpu_check/1"
REPORT = "gpu-report.json"
SUMMARY = "gpu-summary.txt"
PHASES = ("setup", "device", "tests", "bench")
#: Seconds each phase may take by default: 570 in all, under the check's 10 minutes.
LIMITS = {"setup": 240, "device": 60, "tests": 150, "bench": 120}
#: Elements of the bench's segment: on a GPU, and in a rehearsal on the simulator.
SIZE, SIMULATED_SIZE = 1 << 26, 64
#: (B, n_in, n_out) of the dense-layer row: on a GPU, and on the simulator.
DENSE, SIMULATED_DENSE = (256, 1024, 1024), (3, 4, 5)
#: The oldest Linux driver of CUDA 13 (580.65.06): older drivers get numba-cuda[cu12].
CUDA13_DRIVER = 580
MAX_SIZE = 1 << 27  # a segment's largest n (docs/format.md)
OK = ("passed", "skipped")


def _load_cli() -> types.ModuleType:
    """vgc_ref._cli, also before vgc_ref's dependencies are installed.

    ``import vgc_ref`` imports NumPy; on a machine where the setup phase has not run yet
    there is none, so the package's ``__init__`` is bypassed (_cli needs only the
    standard library and vgc_ref._version).
    """
    sys.path.insert(0, str(ROOT))
    try:
        from vgc_ref import _cli
    except ImportError:
        package = types.ModuleType("vgc_ref")
        package.__path__ = [str(ROOT / "vgc_ref")]
        sys.modules["vgc_ref"] = package
        from vgc_ref import _cli
    return _cli


cli = _load_cli()


# --------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------


def _size(text: str) -> int:
    """An element count: 67108864, 2^26 or 2**26; 1 .. 2^27."""
    import argparse

    m = re.fullmatch(r"2(?:\^|\*\*)(\d+)", text.strip())
    try:
        n = 1 << int(m.group(1)) if m else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an element count (e.g. 67108864 or 2^26)"
        ) from None
    if not 1 <= n <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"{text}: must be in 1 .. 2^27 = {MAX_SIZE} (one segment)")
    return n


def _limit(text: str) -> tuple[str, float]:
    """PHASE=SECONDS."""
    import argparse

    phase, _, seconds = text.partition("=")
    if phase not in PHASES:
        raise argparse.ArgumentTypeError(f"{text!r}: the phase must be one of {', '.join(PHASES)}")
    try:
        value = float(seconds)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give PHASE=SECONDS with SECONDS > 0")
    return phase, value


def parse_args(argv: list[str] | None = None):
    import argparse

    p = cli.ArgumentParser(
        prog="gpu_check",
        description="Set up, then check the numba-cuda backend on this machine's GPU: "
        "device, gpu tests, device benchmark; one JSON report.",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        default="gpu-report",
        help="where the report and logs go (default: %(default)s)",
    )
    p.add_argument(
        "--size",
        type=_size,
        help=f"elements of the bench's segment (default 2^26; with --simulate {SIMULATED_SIZE})",
    )
    p.add_argument(
        "--repeats", type=int, help="timed runs per bench row, best kept (default 5; with --simulate 1)"
    )
    p.add_argument("--simulate", action="store_true", help="rehearse on the CUDA simulator (no GPU needed)")
    p.add_argument(
        "--skip-setup",
        action="store_true",
        help="install nothing; use --venv's python if it exists, else this one",
    )
    p.add_argument(
        "--venv",
        default=os.environ.get("VGC_GPU_VENV") or str(ROOT / ".venv-gpu"),
        help="the venv to use or create (default: $VGC_GPU_VENV, else .venv-gpu in the checkout)",
    )
    p.add_argument(
        "--cuda-wheels",
        choices=("auto", "cu12", "cu13"),
        default="auto",
        help="numba-cuda's CUDA wheels for a new venv (default: from the driver's version)",
    )
    p.add_argument(
        "--limit",
        type=_limit,
        action="append",
        default=[],
        metavar="PHASE=SECONDS",
        help="time limit of one phase (repeatable); defaults "
        + ", ".join(f"{k}={v}" for k, v in LIMITS.items()),
    )
    p.add_argument("--worker", choices=("device", "bench"), help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error(f"--repeats {args.repeats}: must be >= 1")
    if args.worker and not args.worker_out:
        p.error("--worker needs --worker-out")
    if args.size is None:
        args.size = SIMULATED_SIZE if args.simulate else SIZE
    if args.repeats is None:
        args.repeats = 1 if args.simulate else 5
    args.limits = {**LIMITS, **dict(args.limit)}
    return args


# --------------------------------------------------------------------------------------
# Workers: run in the venv's python, import vgc_ref and Numba
# --------------------------------------------------------------------------------------


def _to_json(x):
    """json.dump's fallback: NumPy scalars as Python numbers, anything else as text."""
    return x.item() if hasattr(x, "item") else str(x)


def device_info() -> dict:
    """The device as numba.cuda sees it (or the simulator's stand-in)."""
    import importlib.metadata

    import numba
    from numba import config, cuda

    info: dict = {"simulator": bool(config.ENABLE_CUDASIM), "numba": numba.__version__}
    try:
        info["numba_cuda"] = importlib.metadata.version("numba-cuda")
    except importlib.metadata.PackageNotFoundError:
        info["numba_cuda"] = None
    path = getattr(cuda, "__file__", "") or ""
    info["cuda_target"] = (
        "simulator" if info["simulator"] else ("numba-cuda" if "numba_cuda" in path else "built-in")
    )
    info["available"] = bool(cuda.is_available())
    ctx = cuda.current_context()
    dev = ctx.device
    name = getattr(dev, "name", "CUDA simulator" if info["simulator"] else None)
    info["name"] = name.decode() if isinstance(name, bytes) else name
    info["compute_capability"] = ".".join(str(x) for x in dev.compute_capability)
    info["uuid"] = getattr(dev, "uuid", None)
    free, total = ctx.get_memory_info()
    finite = free != float("inf")
    info["memory_total_bytes"] = int(total) if finite else None
    info["memory_free_bytes"] = int(free) if finite else None
    if not info["simulator"]:
        from numba.cuda.cudadrv import driver

        info["driver_cuda_version"] = ".".join(str(x) for x in driver.get_version())
        for attr in ("MULTIPROCESSOR_COUNT", "MEMORY_CLOCK_RATE", "GLOBAL_MEMORY_BUS_WIDTH"):
            try:
                info[attr.lower()] = int(getattr(dev, attr))
            except Exception:  # an attribute this driver does not answer
                info[attr.lower()] = None
    try:
        info["runtime_cuda_version"] = ".".join(str(x) for x in cuda.runtime.get_version())
    except Exception as exc:  # no runtime library found
        info["runtime_cuda_version"] = f"unknown ({exc})"
    from vgc_ref.backends import cuda_bench, cuda_kernels

    info["peak_gb_per_s"] = cuda_bench.theoretical_bandwidth()
    info["threads_per_block"] = cuda_kernels.TPB
    return info


def bench(size: int, repeats: int, simulate: bool) -> dict:
    """cuda_rows at ``size``, each row checked against the reference before it is timed."""
    from vgc_ref.backends import cuda_bench, get_backend

    dense = SIMULATED_DENSE if simulate else DENSE
    rows = cuda_bench.cuda_rows(size, repeats, get_backend("numpy"), dense=dense)
    return {
        "n": size,
        "repeats": repeats,
        "dense": list(dense),
        "peak_gb_per_s": cuda_bench.theoretical_bandwidth(),
        "rows": rows,
    }


def worker(args) -> int:
    result = device_info() if args.worker == "device" else bench(args.size, args.repeats, args.simulate)
    tmp = args.worker_out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=_to_json)
    os.replace(tmp, args.worker_out)
    return 0


# --------------------------------------------------------------------------------------
# Running a phase
# --------------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(f"gpu_check: {text}", file=sys.stderr, flush=True)


def run_logged(argv: list[str], log, timeout: float, env: dict | None = None) -> int | None:
    """Run argv (in its own process group) with output to ``log``; its exit status, None on timeout.

    On timeout the whole group is killed: pip and pytest start processes of their own.
    """
    log.write(f"$ {' '.join(str(a) for a in argv)}\n")
    log.flush()
    if timeout <= 0:
        log.write("(no time left in this phase)\n")
        return None
    proc = subprocess.Popen(
        [str(a) for a in argv],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.write(f"\n(killed after {timeout:.0f} s: the phase's time limit)\n")
        return None


class Phase:
    """One phase's record: status, time, limit, log; the body fills in the rest."""

    def __init__(self, name: str, out: Path, limit: float) -> None:
        self.name = name
        self.limit = limit
        self.log_path = out / f"{name}.log"
        self.record: dict = {"status": "failed", "limit_s": limit, "log": self.log_path.name, "detail": ""}
        self.start = time.monotonic()

    def left(self) -> float:
        return self.limit - (time.monotonic() - self.start)

    def done(self, status: str, detail: str, **extra) -> dict:
        self.record.update(
            status=status, detail=detail, seconds=round(time.monotonic() - self.start, 2), **extra
        )
        _say(f"{self.name}: {status} ({self.record['seconds']:.1f} s) {detail}")
        return self.record


def child_env(simulate: bool) -> dict:
    """The phases' environment: the simulator on or off, this checkout first on the path."""
    env = dict(os.environ)
    env.pop(cli.PARSE_ONLY, None)  # the children must do their work
    env["NUMBA_ENABLE_CUDASIM"] = "1" if simulate else "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


# --------------------------------------------------------------------------------------
# The phases
# --------------------------------------------------------------------------------------


def nvidia_smi() -> dict | None:
    """nvidia-smi's name, driver, memory and compute capability of each GPU; None without it."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    for fields in ("name,driver_version,memory.total,compute_cap", "name,driver_version,memory.total"):
        try:
            done = subprocess.run(
                [exe, f"--query-gpu={fields}", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"error": str(exc)}
        if done.returncode == 0:
            keys = fields.split(",")
            gpus = [
                dict(zip(keys, (x.strip() for x in line.split(",")))) for line in done.stdout.splitlines()
            ]
            return {"gpus": gpus}
    return {"error": (done.stderr or done.stdout).strip()[-300:]}


def _wheels(choice: str, smi: dict | None) -> tuple[str, str]:
    """cu12 or cu13 for numba-cuda, and why."""
    if choice != "auto":
        return choice, "--cuda-wheels"
    try:
        driver = smi["gpus"][0]["driver_version"]
        major = int(driver.split(".")[0])
    except (TypeError, KeyError, IndexError, ValueError):
        return "cu13", "driver version unknown"
    return ("cu13" if major >= CUDA13_DRIVER else "cu12"), f"driver {driver}"


def _probe(python: Path, simulate: bool, env: dict, log, timeout: float) -> bool:
    """Whether ``python`` imports everything the phases need (within ``timeout`` seconds)."""
    need = "import numpy, numba, pytest, hypothesis, vgc_ref"
    if not simulate:
        need += (
            "; import importlib.util as u; assert u.find_spec('numba_cuda'), 'numba-cuda is not installed'"
        )
    return python.exists() and run_logged([python, "-c", need], log, min(60.0, timeout), env) == 0


def phase_setup(args, out: Path, env: dict, smi: dict | None) -> tuple[str, dict]:
    """The python the other phases run with, and the setup's record."""
    phase = Phase("setup", out, args.limits["setup"])
    venv = Path(args.venv).resolve()
    vpy = venv / "bin" / "python"
    if args.skip_setup:
        python = str(vpy) if vpy.exists() else sys.executable
        phase.log_path.write_text(f"--skip-setup: nothing installed; python {python}\n", encoding="utf-8")
        return python, phase.done("skipped", f"--skip-setup; python {python}", python=python)
    with open(phase.log_path, "w", encoding="utf-8") as log:
        if _probe(vpy, args.simulate, env, log, phase.left()):
            return str(vpy), phase.done("passed", f"reused {venv}", python=str(vpy), installed=False)
        if args.simulate:
            wheels, why, requirements = None, "rehearsal: no CUDA wheels", [".[test]"]
        else:
            wheels, why = _wheels(args.cuda_wheels, smi)
            requirements = [".[test,cuda]"] if wheels == "cu13" else [".[test]", "numba-cuda[cu12]>=0.30.4"]
        steps = [] if vpy.exists() else [[sys.executable, "-m", "venv", venv]]
        steps.append([vpy, "-m", "pip", "install", "-q", "-e", *requirements])
        for step in steps:
            rc = run_logged(step, log, phase.left(), env)
            if rc != 0:
                fallback = str(vpy) if vpy.exists() else sys.executable
                status = "timed out" if rc is None else "failed"
                detail = f"{' '.join(str(a) for a in step[:4])} ...: " + (
                    "time limit" if rc is None else f"exit {rc}; {_tail(phase.log_path)}"
                )
                return fallback, phase.done(status, detail, python=fallback, installed=True, wheels=wheels)
        ok = _probe(vpy, args.simulate, env, log, phase.left())
    detail = f"installed {' '.join(requirements)} into {venv} ({why})"
    if not ok:
        detail += f"; but it does not import what the phases need: {_tail(phase.log_path)}"
    return str(vpy), phase.done(
        "passed" if ok else "failed", detail, python=str(vpy), installed=True, wheels=wheels
    )


def _run_worker(name: str, python: str, args, out: Path, env: dict) -> tuple[Phase, dict | None, str]:
    """Run this file as ``--worker NAME``; (phase, its JSON or None, why not)."""
    phase = Phase(name, out, args.limits[name])
    result_path = out / f"{name}.json"
    if result_path.exists():
        result_path.unlink()
    argv = [python, Path(__file__).resolve(), "--worker", name, "--worker-out", result_path]
    argv += ["--size", str(args.size), "--repeats", str(args.repeats)] + (
        ["--simulate"] if args.simulate else []
    )
    with open(phase.log_path, "w", encoding="utf-8") as log:
        rc = run_logged(argv, log, phase.left(), env)
    if rc is None:
        return phase, None, "time limit"
    if rc != 0 or not result_path.exists():
        return phase, None, f"exit {rc}: {_tail(phase.log_path)}"
    return phase, json.loads(result_path.read_text(encoding="utf-8")), ""


def phase_device(python: str, args, out: Path, env: dict, smi: dict | None) -> dict:
    phase, info, why = _run_worker("device", python, args, out, env)
    if info is None:
        return phase.done("timed out" if why == "time limit" else "failed", why, gpu=None, nvidia_smi=smi)
    if args.simulate:
        ok, detail = info["simulator"], "the CUDA simulator (rehearsal)"
    else:
        ok = not info["simulator"] and info["available"]
        detail = (
            f"{info['name']}, compute capability {info['compute_capability']}, {info['cuda_target']} target"
        )
        if not ok:
            detail = "no real GPU: " + detail
    return phase.done("passed" if ok else "failed", detail, gpu=info, nvidia_smi=smi)


def junit_results(path: Path) -> tuple[dict, list[dict], list[dict], list[dict]]:
    """From pytest's JUnit XML: counts, the failed tests, the skipped tests, the skipped modules.

    counts: {tests, passed, failed, errors, skipped, modules_skipped}. A module skipped
    while collecting (``pytest.importorskip`` of an extra this venv lacks, e.g. torch) is
    not a test: it is listed apart, with its reason.
    """
    root = ET.parse(path).getroot()
    counts = {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "modules_skipped": 0}
    failed, skipped, modules = [], [], []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        if bad is None and skip is not None and not case.get("classname"):
            counts["modules_skipped"] += 1
            reason = re.search(r"Skipped: (.*?)['\"]\)\s*$", skip.text or "", re.S)
            text = reason.group(1) if reason else (skip.text or "")
            modules.append({"module": case.get("name", ""), "reason": text[:300]})
            continue
        counts["tests"] += 1
        if bad is not None:
            counts["failed" if bad.tag == "failure" else "errors"] += 1
            failed.append({"test": name, "message": (bad.get("message") or "")[:300]})
        elif skip is not None:
            counts["skipped"] += 1
            skipped.append({"test": name, "reason": (skip.get("message") or "")[:300]})
        else:
            counts["passed"] += 1
    return counts, failed, skipped, modules


def phase_tests(python: str, args, out: Path, env: dict) -> dict:
    phase = Phase("tests", out, args.limits["tests"])
    xml = out / "gpu-tests.xml"
    if xml.exists():
        xml.unlink()
    argv = [
        python,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "tests",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        f"--junitxml={xml}",
    ]
    with open(phase.log_path, "w", encoding="utf-8") as log:
        rc = run_logged(argv, log, phase.left(), env)
    if not xml.exists():
        status = "timed out" if rc is None else "failed"
        return phase.done(status, f"no results (exit {rc}): {_tail(phase.log_path)}", counts=None)
    counts, failed, skipped, modules = junit_results(xml)
    detail = ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "errors", "skipped"))
    if modules:
        detail += f" ({len(modules)} modules not collected: an extra is missing)"
    found = {"counts": counts, "failed": failed, "skipped": skipped, "modules_skipped": modules}
    if rc is None:
        return phase.done("timed out", detail, **found)
    ok = rc == 0 and counts["tests"] > 0
    if not args.simulate and (counts["skipped"] or not counts["passed"]):
        ok = False  # on a GPU every gpu test must run
        detail += "; on a GPU no gpu test may skip"
    return phase.done("passed" if ok else "failed", detail, exit=rc, **found)


def phase_bench(python: str, args, out: Path, env: dict) -> dict:
    phase, result, why = _run_worker("bench", python, args, out, env)
    if result is None:
        status = "timed out" if why == "time limit" else "failed"
        return phase.done(status, why, n=args.size, peak_gb_per_s=None, rows=[])
    rows = result["rows"]
    differ = [r["op"] for r in rows if r.get("checked") is False]
    ok = bool(rows) and not differ
    detail = f"{len(rows)} rows at n = {args.size}" + (
        f"; results differ: {', '.join(differ)}" if differ else ""
    )
    return phase.done("passed" if ok else "failed", detail, **result)


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


def checkout() -> dict:
    """The version and, where git is there, the commit and whether the tree had changes."""
    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "vgc_ref" / "_version.py").read_text())
    info = {"version": version.group(1) if version else None, "commit": None, "changed": None}
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        try:
            head = subprocess.run(
                [git, "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
            status = subprocess.run(
                [git, "status", "--porcelain", "--untracked-files=no"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return info
        if head.returncode == 0:
            info["commit"] = head.stdout.strip()
            info["changed"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    return info


def _num(x, spec: str) -> str:
    return format(x, spec) if isinstance(x, (int, float)) else ""


def _pct(x) -> str:
    return f"{100 * x:5.0f}%" if isinstance(x, (int, float)) else f"{'':>6}"


def summary(report: dict) -> str:
    """The report in a few lines of text."""
    lines = []
    head = "vgc_ref GPU check"
    if report["rehearsal"]:
        head += ": REHEARSAL on the CUDA simulator (nothing here is a GPU measurement)"
    lines.append(f"{head}; {report['started']}, vgc_ref {report['checkout']['version']}")
    gpu = report["phases"]["device"].get("gpu") or {}
    if gpu:
        mem = gpu.get("memory_total_bytes")
        peak = gpu.get("peak_gb_per_s")
        lines.append(
            f"GPU: {gpu.get('name')}, compute capability {gpu.get('compute_capability')}"
            + (f", {mem / 2**30:.1f} GiB" if mem else "")
            + (f", driver CUDA {gpu['driver_cuda_version']}" if gpu.get("driver_cuda_version") else "")
            + (f", peak {peak:.0f} GB/s" if peak else "")
            + f"; numba {gpu.get('numba')}, numba-cuda {gpu.get('numba_cuda')}"
            + f" ({gpu.get('cuda_target')} target)"
        )
    smi = (report["phases"]["device"].get("nvidia_smi") or {}).get("gpus")
    if smi:
        lines.append("nvidia-smi: " + "; ".join(", ".join(g.values()) for g in smi))
    for name in PHASES:
        ph = report["phases"][name]
        lines.append(f"{name:<7} {ph['status']:<9} {ph.get('seconds', 0):6.1f} s  {ph['detail']}")
    for f in report["phases"]["tests"].get("failed") or []:
        lines.append(f"  FAILED {f['test']}: {f['message'][:160]}")
    for m in report["phases"]["tests"].get("modules_skipped") or []:
        lines.append(f"  not collected: {m['module']}: {m['reason'][:160]}")
    rows = report["phases"]["bench"].get("rows") or []
    if rows:
        lines.append(
            f"  {'operation':<44} {'B/elem':>6} {'ms':>9} {'GB/s':>7} {'% copy':>6} {'% peak':>6}  checked"
        )
        for r in rows:
            per = _num(r.get("hbm_bytes_per_element"), "6.1f")
            gbs = _num(r.get("device_gb_per_s"), "7.0f")
            checked = {True: "yes", False: "NO"}.get(r.get("checked"), "")
            copy, peak = _pct(r.get("share_of_device_copy")), _pct(r.get("share_of_peak"))
            lines.append(
                f"  {r['op'][:44]:<44} {per:>6} {1e3 * r['seconds']:9.3f} {gbs:>7} {copy} {peak}  {checked}"
            )
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines.append(f"overall: {verdict} in {report['seconds']:.0f} s (exit status {report['exit_status']})")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    problem = cli.output_dir_problem(args.out)
    if problem:
        cli.usage_error("gpu_check", f"--out {args.out}: {problem}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    env = child_env(args.simulate)
    report: dict = {
        "schema": SCHEMA,
        "rehearsal": args.simulate,
        "passed": False,
        "exit_status": 1,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "checkout": checkout(),
        "host": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        },
        "options": {
            "size": args.size,
            "repeats": args.repeats,
            "venv": str(Path(args.venv).resolve()),
            "skip_setup": args.skip_setup,
            "limits_s": args.limits,
        },
        "environment": {
            k: v
            for k, v in sorted(env.items())
            if k.startswith(("NUMBA_", "VGC_", "CUDA_")) or k == "PYTHONPATH"
        },
        "phases": {},
    }
    _say(("rehearsal on the CUDA simulator; " if args.simulate else "") + f"report in {out / REPORT}")
    smi = None if args.simulate else nvidia_smi()
    phases = report["phases"]
    python, phases["setup"] = phase_setup(args, out, env, smi)
    phases["device"] = phase_device(python, args, out, env, smi)
    phases["tests"] = phase_tests(python, args, out, env)
    phases["bench"] = phase_bench(python, args, out, env)
    report["passed"] = all(phases[name]["status"] in OK for name in PHASES)
    report["exit_status"] = 0 if report["passed"] else 1
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report["seconds"] = round(time.monotonic() - t0, 2)
    write_atomically(out / REPORT, json.dumps(report, indent=1, default=_to_json) + "\n")
    text = summary(report)
    write_atomically(out / SUMMARY, text)
    print(text, end="")
    return report["exit_status"]


if __name__ == "__main__":
    sys.exit(main())
