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

import argparse
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
    ap = argparse.ArgumentParser(prog="python -m mpi_demo.costcheck", description=__doc__.split("\n")[0])
    ap.add_argument("--bench", action="append", default=None, help="bench JSON (repeatable)")
    ap.add_argument("--out", default="docs/results/costcheck.json")
    args = ap.parse_args(argv)
    from mpi_demo import sweep
    from vgc_ref.costmodel import Workload, predict

    benches = [Path(b) for b in (args.bench or ["docs/results/bench_numpy.json"])]
    rates = {str(b): bench_rates(b) for b in benches}
    print("bench rates:", json.dumps(rates, indent=1), flush=True)
    pings = ping()
    links = {op: fit(pings, op) for op in ("allgather", "allreduce")}
    for op, f in links.items():
        print(f"{op}: L = {1e6 * f['latency']:.1f} us, W = {f['bandwidth'] / 1e9:.3f} GB/s", flush=True)
    os.environ.update({k: v for k, v in mpi_env().items() if k.startswith("MPIR")})
    runs = []
    for ds in ("synthetic", "digits"):
        for spec in (sweep.Spec(ds, "none"), sweep.Spec(ds, "vgc", alpha=2.0)):
            sim = sweep.run_simulated(spec, 0)
            mpi = sweep.run_mpi(spec, 0)
            runs.append({"spec": spec.label, "dataset": ds, "simulated": sim, "mpi": mpi})
            print(
                f"{ds} {spec.label}: mpi ms/step "
                + " ".join(f"{p} {1e3 * mpi[p + '_s']:.3f}" for p in sweep.PHASES)
                + "; simulated "
                + " ".join(f"{1e3 * sim[p + '_s']:.3f}" for p in sweep.PHASES),
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
                    "measured_mpi_ms": {p: 1e3 * mpi[p + "_s"] for p in sweep.PHASES},
                    "measured_simulated_ms": {p: 1e3 * sim[p + "_s"] for p in sweep.PHASES},
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
        "machine": sweep.machine_info(),
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
        for p in sweep.PHASES:
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
