"""Measure how long the README's commands take on this machine, and write the README's table.

    python tools/setup_times.py measure CLONE --target demo --target demo --target test-quick
    python tools/setup_times.py render        # README.md's table from docs/results/setup-times.json

``measure`` runs ``make TARGET`` in CLONE (a fresh clone: the first run of a target that
builds a venv is its cold time) one after another, its output in
``CLONE/setup-times-<i>-<target>.log``, and records for each the wall time,
the exit status, whether the venvs existed before (cold or warm), and the load average
before and after, with the machine's CPU model, flags that matter (avx2, avx512f, fma)
and core count; it appends to docs/results/setup-times.json (``--json``). ``render``
writes the table between ``<!-- setup-times:start -->`` and ``<!-- setup-times:end -->`` of
README.md from that file; tests/test_packaging.py checks that README.md holds what
``render`` would write.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vgc_ref._cli import ArgumentParser, output_file_problem  # noqa: E402

JSON = ROOT / "docs" / "results" / "setup-times.json"
START, END = "<!-- setup-times:start -->", "<!-- setup-times:end -->"
BLOCK = re.compile(re.escape(START) + r"\n(.*?)" + re.escape(END), re.S)
INSTALLS = {
    "demo": "`.venv`: numpy, numba, mpi4py and the MPICH wheel (the MPI), pytest, hypothesis, ruff, "
    "build, scikit-learn (the digits data set), matplotlib, mnist1d, NVIDIA's nvdisasm",
    "test": "adds the CPU build of torch 2.13.0 to `.venv` (`TORCH=` leaves it out; 1.6 GB with it) and "
    "`.venv-cuda` (870 MB): NVIDIA's numba-cuda with NVVM 13.0 for the CUDA compile checks "
    "(`CUDA_CHECK=` leaves it out); the tests needing either then skip, saying why",
    "test-quick": "nothing beyond `make demo`'s `.venv`",
}


def machine() -> dict:
    cpu, flags = platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), cpu
        )
        line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
        flags = set(line.split(":", 1)[-1].split())
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "flags": sorted(flags & {"avx2", "avx512f", "fma"}),
        "python": platform.python_version(),
    }


def measure(clone: Path, targets: list[str]) -> list[dict]:
    rows = []
    for target in targets:
        warm = (clone / ".venv" / ".installed").exists()
        before = os.getloadavg()
        t0 = time.monotonic()
        log = clone / f"setup-times-{len(rows)}-{target}.log"  # the run's whole output
        with open(log, "w") as out:
            done = subprocess.run(["make", target], cwd=clone, stdout=out, stderr=subprocess.STDOUT)
        wall = time.monotonic() - t0
        row = {
            "target": target,
            "state": "warm" if warm else "cold",
            "seconds": round(wall, 1),
            "exit": done.returncode,
            "load_before": [round(x, 2) for x in before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        row["last_line"] = tail[0][:200]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def _time(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def render(doc: dict) -> str:
    """The README's table from the recorded runs: per target, cold and warm (load in brackets)."""
    m = doc["machine"]
    lines = [
        f"Measured on {m['cores']} cores ({m['cpu']}; {', '.join(m['flags']) or 'no AVX2'}), "
        "load average at the start in brackets, packages from this machine's local wheel cache (add the "
        "downloads elsewhere); `tools/setup_times.py` measures and writes this table.",
        "",
        "| command | installs | cold (nothing installed) | warm |",
        "|---|---|---|---|",
    ]
    for target in ("demo", "test", "test-quick"):
        cells = []
        for state in ("cold", "warm"):
            runs = [
                r for r in doc["runs"] if r["target"] == target and r["state"] == state and r["exit"] == 0
            ]
            cells.append(
                ", ".join(f"{_time(r['seconds'])} [{r['load_before'][0]:.1f}]" for r in runs)
                or "not measured"
            )
        lines.append(f"| `make {target}` | {INSTALLS[target]} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def readme_block(text: str) -> str:
    match = BLOCK.search(text)
    return match.group(1).rstrip("\n") if match else ""


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python tools/setup_times.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_measure = sub.add_parser("measure", help="run make TARGET in a clone and record the times")
    p_measure.add_argument("clone", type=Path, help="a fresh clone of the repository")
    p_measure.add_argument("--target", action="append", required=True, choices=sorted(INSTALLS))
    p_measure.add_argument(
        "--json", type=Path, default=JSON, help="file the runs are added to (default: %(default)s)"
    )
    sub.add_parser("render", help="write README.md's table from the recorded runs")
    args = parser.parse_args(argv)
    if args.command == "measure":
        if not (args.clone / "Makefile").is_file():
            parser.error(f"{args.clone}: not a checkout (no Makefile)")
        problem = output_file_problem(str(args.json))
        if problem:
            parser.error(f"--json {args.json}: {problem}")
        doc = json.loads(args.json.read_text()) if args.json.exists() else {"machine": machine(), "runs": []}
        doc["runs"] += measure(args.clone, args.target)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
        return 0
    doc = json.loads(JSON.read_text())
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text:
        parser.error(f"README.md has no {START} ... {END} block")
    text = BLOCK.sub(lambda _: f"{START}\n{render(doc)}\n{END}", text, count=1)
    readme.write_text(text)
    print("README.md: setup-times table written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
