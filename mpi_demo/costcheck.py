"""Check :mod:`vgc_ref.costmodel` against the demo's measured per-phase timings on this machine.

    python -m mpi_demo.costcheck [--bench docs/results/bench_numpy.json] [--out docs/results/costcheck.json]

Three measurements, then the model:

1. a ping benchmark of mpich's collectives with ``mpiexec -n 4`` (mpi4py's pickle-based
   ``allgather``, the one the demo uses, and a buffer ``Allreduce``): time against message
   size, fitted to the cost model's own formulas, gives this machine's effective latency
   L and bandwidth W (a shared-memory "network": every rank is a process on this host);
2. the demo under ``mpiexec -n 4`` for none and vgc (alpha 2) on both data sets: the mean
   time of one step by phase (compute, variance, compress, communicate);
3. the benchmark's measured throughputs (``python -m vgc_ref.bench --quick --json``):
   the VGC step's elements/s, decode-and-accumulate's message bytes/s, and the variance's
   extra cost relative to a plain forward+backward pass.

The model (:func:`vgc_ref.costmodel.predict`) is then given N, P = 4, L, W, the run's
measured ratio and its measured compute time, and its predicted split is printed next to
the measured one as a Markdown table (docs/costmodel.md shows it).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mpi_demo.comm import mpi_env

RANKS = 4
PING_SIZES = (16, 1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20)


def mpiexec() -> str:
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else "mpiexec"


def _ping(out: str, reps: int) -> None:
    """One rank of the ping benchmark: mean time per collective, per size (rank 0 writes)."""
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rows = []
    for size in PING_SIZES:
        payload = bytes(size)
        buf = np.zeros(max(size // 4, 1), np.float32)
        res = np.empty_like(buf)
        for op in ("allgather", "allreduce"):
            for _ in range(3):  # warm-up
                comm.allgather(payload) if op == "allgather" else comm.Allreduce(buf, res)
            comm.Barrier()
            best = float("inf")
            for _ in range(5):  # best of 5 batches of `reps`: other load on the host hits some batches
                comm.Barrier()
                t0 = time.perf_counter()
                for _ in range(reps):
                    comm.allgather(payload) if op == "allgather" else comm.Allreduce(buf, res)
                t = (time.perf_counter() - t0) / reps
                best = min(best, comm.allreduce(t, op=MPI.MAX))
            rows.append({"op": op, "bytes": size if op == "allgather" else 4 * buf.size, "seconds": best})
    if comm.rank == 0:
        Path(out).write_text(json.dumps(rows))


def fit(rows: list[dict[str, Any]], op: str, p: int = RANKS) -> dict[str, float]:
    """Least-squares fit of the model's formula for ``op`` to (bytes, seconds): L and W.

    allgather: t = (P-1) L + (P-1) m / W;  allreduce: t = 2 (P-1) L + 2 (P-1)/P m / W.
    """
    import numpy as np

    pts = [(r["bytes"], r["seconds"]) for r in rows if r["op"] == op]
    m = np.array([b for b, _ in pts], float)
    t = np.array([s for _, s in pts], float)
    slope, icpt = np.polyfit(m, t, 1)
    if op == "allgather":
        lat, bw = icpt / (p - 1), (p - 1) / slope
    else:
        lat, bw = icpt / (2 * (p - 1)), 2 * (p - 1) / p / slope
    return {"latency": max(lat, 0.0), "bandwidth": bw}


def ping(reps: int = 50) -> list[dict[str, Any]]:
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ping.json"
        cmd = [mpiexec(), "-n", str(RANKS), sys.executable, "-m", "mpi_demo.costcheck", "_ping", str(out)]
        subprocess.run([*cmd, str(reps)], check=True, env=mpi_env(), timeout=300)
        return json.loads(out.read_text())


PHASES = ("compute", "variance", "compress", "communicate")
#: The demo configurations whose per-phase timings the model is checked against.
RUNS = (("synthetic", "none"), ("synthetic", "vgc"), ("digits", "none"), ("digits", "vgc"))


def _config(dataset: str, method: str, quick: bool, ranks: int | None):
    """The demo's configuration for one run: alpha 2, seed 0, the demo's defaults otherwise."""
    from mpi_demo.config import TrainConfig

    extra = {"epochs": 1, "steps": 20} if quick else {}
    return TrainConfig(
        dataset=dataset, method=method, alpha=2.0, seed=0, ranks=ranks, progress=False, **extra
    )


def _row(method: str, r) -> dict[str, Any]:
    """What the check needs of one run's result."""
    row = {"method": method, "n_params": r.dense_bytes // 4, "compression_ratio": r.compression_ratio}
    for p in PHASES:
        row[f"{p}_s"] = r.time_per_step[p]
    row["compute_s"] = r.time_per_step["compute"]
    return row


def run_simulated(dataset: str, method: str, quick: bool) -> dict[str, Any]:
    """One run with RANKS simulated workers in this process."""
    from mpi_demo.train import run_training

    return _row(method, run_training(_config(dataset, method, quick, RANKS)))


def run_mpi(dataset: str, method: str, quick: bool) -> dict[str, Any]:
    """One run under ``mpiexec -n RANKS``; rank 0 writes the row as JSON."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        job = json.dumps({"dataset": dataset, "method": method, "quick": quick, "out": str(out)})
        cmd = [mpiexec(), "-n", str(RANKS), sys.executable, "-m", "mpi4py", "-m", "mpi_demo.costcheck"]
        subprocess.run([*cmd, "_run", job], check=True, stdout=subprocess.DEVNULL, env=mpi_env(), timeout=900)
        return json.loads(out.read_text())


def _run_rank(job_text: str) -> None:
    """One rank of :func:`run_mpi`'s job."""
    from mpi_demo.comm import MPIComm
    from mpi_demo.train import run_training

    job = json.loads(job_text)
    comm = MPIComm()
    r = run_training(_config(job["dataset"], job["method"], job["quick"], None), comm)
    if comm.is_root:
        Path(job["out"]).write_text(json.dumps(_row(job["method"], r)))


def bench_rates(path: Path) -> dict[str, float]:
    """compress_rate (elements/s, numpy VGC step at 1 %), aggregate_rate (message bytes/s),
    variance_fraction (variance's extra time over a plain dense forward+backward)."""
    doc = json.loads(path.read_text())
    n = doc["n"]
    rows = {(r["op"], r["backend"]): r for r in doc["rows"]}
    step = rows[("vgc_step 1.0%", "numpy")]
    agg = rows[("decode_accumulate P=4, 1%", "numpy")]
    msg_bytes = agg["bytes"] - 4 * n
    var = rows[("dense fwd+bwd + variance", "numpy")]
    return {
        "n": n,
        "compress_rate": n / step["seconds"],
        "aggregate_rate": msg_bytes / agg["seconds"],
        "variance_fraction": var["vs_plain"] - 1.0,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_ping":
        _ping(argv[1], int(argv[2]))
        return 0
    if argv and argv[0] == "_run":
        _run_rank(argv[1])
        return 0
    from vgc_ref._cli import ArgumentParser, input_file_problem, output_file_problem

    ap = ArgumentParser(prog="python -m mpi_demo.costcheck", description=__doc__.split("\n")[0])
    ap.add_argument("--bench", action="append", default=None, help="bench JSON (repeatable)")
    ap.add_argument(
        "--out",
        default="docs/results/costcheck.json",
        help="JSON of every measurement (default: %(default)s)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a rehearsal in well under a minute: 20 steps per run, a short ping; its figures mean nothing",
    )
    args = ap.parse_args(argv)
    problem = output_file_problem(args.out)
    if problem:
        ap.error(f"--out {args.out!r}: {problem}")
    for bench in args.bench or []:
        problem = input_file_problem(bench)
        if problem:
            ap.error(f"--bench {bench!r}: {problem}")
    from mpi_demo.study.report import provenance
    from vgc_ref.costmodel import Workload, predict

    benches = [Path(b) for b in (args.bench or ["docs/results/bench_numpy.json"])]
    rates = {str(b): bench_rates(b) for b in benches}
    print("bench rates:", json.dumps(rates, indent=1), flush=True)
    pings = ping(reps=2 if args.quick else 50)
    links = {op: fit(pings, op) for op in ("allgather", "allreduce")}
    for op, f in links.items():
        print(f"{op}: L = {1e6 * f['latency']:.1f} us, W = {f['bandwidth'] / 1e9:.3f} GB/s", flush=True)
    os.environ.update({k: v for k, v in mpi_env().items() if k.startswith("MPIR")})
    runs = []
    for ds, method in RUNS:
        label = "vgc a=2" if method == "vgc" else method
        sim = run_simulated(ds, method, args.quick)
        mpi = run_mpi(ds, method, args.quick)
        runs.append({"spec": label, "dataset": ds, "simulated": sim, "mpi": mpi})
        print(
            f"{ds} {label}: mpi ms/step "
            + " ".join(f"{p} {1e3 * mpi[p + '_s']:.3f}" for p in PHASES)
            + "; simulated "
            + " ".join(f"{1e3 * sim[p + '_s']:.3f}" for p in PHASES),
            flush=True,
        )
    checks = []
    for r in runs:
        mpi, sim = r["mpi"], r["simulated"]
        for bench_name, rate in rates.items():
            w = Workload(
                n_params=mpi["n_params"],
                workers=RANKS,
                bandwidth=links["allgather"]["bandwidth"],
                latency=links["allgather"]["latency"],
                ratio=mpi["compression_ratio"],
                compute=mpi["compute_s"],
                variance_fraction=rate["variance_fraction"] if mpi["method"] != "none" else 0.0,
                compress_rate=rate["compress_rate"],
                aggregate_rate=rate["aggregate_rate"],
            )
            pr = predict(w)
            checks.append(
                {
                    "dataset": r["dataset"],
                    "config": r["spec"],
                    "bench": bench_name,
                    "bench_n": rate["n"],
                    "measured_mpi_ms": {p: 1e3 * mpi[p + "_s"] for p in PHASES},
                    "measured_simulated_ms": {p: 1e3 * sim[p + "_s"] for p in PHASES},
                    "predicted_ms": {
                        "compute": 1e3 * w.compute,
                        "variance": 1e3 * pr.variance,
                        "compress": 1e3 * pr.compress,
                        "communicate": 1e3 * (pr.compressed_comm + pr.aggregate),
                        "allgather": 1e3 * pr.compressed_comm,
                        "aggregate": 1e3 * pr.aggregate,
                        "dense_allreduce": 1e3 * pr.dense_comm,
                    },
                    "ratio": mpi["compression_ratio"],
                }
            )
    doc = {
        "command": "python -m mpi_demo.costcheck " + " ".join(argv),
        "machine": provenance(),
        "ping": pings,
        "links": links,
        "rates": rates,
        "runs": runs,
        "checks": checks,
    }
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(
        "\n| data set | config | bench n | phase | measured mpiexec (ms) "
        "| measured simulated (ms) | predicted (ms) |"
    )
    print("|---|---|---:|---|---:|---:|---:|")
    for c in checks:
        for p in PHASES:
            print(
                f"| {c['dataset']} | {c['config']} | {c['bench_n']} | {p} | {c['measured_mpi_ms'][p]:.3f} "
                f"| {c['measured_simulated_ms'][p]:.3f} | {c['predicted_ms'][p]:.3f} |"
            )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    # One thread per process unless the environment says otherwise (as python -m mpi_demo
    # does). Not at import: changing NUMBA_NUM_THREADS in a process whose Numba threads
    # already run makes its next compilation fail.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    sys.exit(main())
