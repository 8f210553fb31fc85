"""Training runs of the sweep: one configuration in one process, many in a process pool.

Every run is :func:`mpi_demo.train.run_training` with 4 simulated ranks in one process,
whose numbers are bit-identical to ``mpiexec -n 4`` (docs/demo.md). Runs are independent,
so :func:`run_many` trains them in ``jobs`` worker processes; each worker process uses one
thread (``NUMBA_NUM_THREADS=1``, set before it imports Numba) so that the timings do not
depend on the others. With one job the runs train in this process, whose thread settings
are left alone (changing NUMBA_NUM_THREADS once Numba's threads run breaks the next
compilation).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpi_demo.study import cache

PHASES = ("compute", "variance", "compress", "communicate")


@dataclass(frozen=True)
class Job:
    """One run: its configuration fields and what the report needs to place it."""

    study: str
    method: str
    value: float | None
    seed: int
    phase: str  # "test": judged on the test set, once, after the last epoch
    fields: dict[str, Any]


def _single_thread() -> None:
    """A worker process's initializer: one thread per library, before anything imports Numba."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"


def train(job: Job) -> dict[str, Any]:
    """Train one job; its row: the test accuracy after the last epoch, the compression figures,
    and the validation accuracy after every epoch (the convergence curve)."""
    from mpi_demo.config import TrainConfig
    from mpi_demo.train import run_training

    fields = dict(job.fields)
    for k in ("hidden", "channels"):
        if k in fields:
            fields[k] = tuple(fields[k])
    r = run_training(TrainConfig(**fields, progress=False))
    accuracy = r.test_accuracy
    row = {
        "study": job.study,
        "method": job.method,
        "value": job.value,
        "seed": job.seed,
        "phase": job.phase,
        "accuracy": accuracy,
        "compression_ratio": r.compression_ratio,
        "sent_fraction": r.sent_fraction,
        "bytes_per_step": r.bytes_per_step,
        "steps": r.steps,
        "n_params": r.dense_bytes // 4,
        "wall_seconds": r.wall_seconds,
        "validation_curve": [h.get("validation_accuracy") for h in r.history],
        "config": job.fields,
    }
    for p in PHASES:
        row[f"{p}_s"] = r.time_per_step[p]
    return row


def run_many(
    jobs: Sequence[Job],
    code: str,
    cache_path: Path | None,
    reuse: bool,
    workers: int,
    log: Callable[[str], None] | None,
    counter: list[int],
    known: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every job's row, in the order of ``jobs``; trains those not taken from the cache.

    Finished runs are appended to ``cache_path``; with ``reuse``, runs already there under
    the same key (configuration and code hash) are taken from it instead of trained.
    ``counter`` is [runs finished, runs planned] for the progress lines. ``known``: the
    cache's rows when the caller has already read (and so checked) them.
    """
    if known is None:
        known = cache.load(cache_path) if (reuse and cache_path is not None) else {}
    keys = [cache.run_key(j.fields, code) for j in jobs]
    rows: list[dict[str, Any] | None] = [None] * len(jobs)
    todo = []
    for i, key in enumerate(keys):
        if key in known:
            rows[i] = {**known[key], "cached": True}
            counter[0] += 1
        else:
            todo.append(i)
    t0 = time.monotonic()

    def done(i: int, row: dict[str, Any]) -> None:
        row["key"] = keys[i]
        rows[i] = row
        counter[0] += 1
        if cache_path is not None:
            cache.append(cache_path, keys[i], row)
        if log is not None:
            j = jobs[i]
            label = j.method if j.value is None else f"{j.method} {j.value:g}"
            log(
                f"[{counter[0]:>3}/{counter[1]}] {time.strftime('%H:%M:%S')} {j.study:<13} {j.phase:<6} "
                f"{label:<18} seed {j.seed}  acc {100 * row['accuracy']:5.1f}%  "
                f"ratio {row['compression_ratio']:7.1f}x  ({row['wall_seconds']:.0f} s; "
                f"{time.monotonic() - t0:.0f} s in this batch)"
            )

    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            done(i, train(jobs[i]))
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_single_thread) as pool:
            futures = {pool.submit(train, jobs[i]): i for i in todo}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
    sys.stdout.flush()
    return [r for r in rows if r is not None]
