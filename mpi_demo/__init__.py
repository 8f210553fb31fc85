"""mpi_demo: train a NumPy MLP across MPI ranks with VGC and its baselines.

    mpiexec -n 4 python -m mpi4py -m mpi_demo train --compare none
    python -m mpi_demo train --simulate-ranks 4 --trace run.jsonl   # the same job, one process
    python -m mpi_demo compare a.jsonl b.jsonl

Modules, in the order a step uses them: :mod:`~mpi_demo.data` (the data sets and each
rank's shard), :mod:`~mpi_demo.model` (the MLP, its g and s, the optimizer),
:mod:`~mpi_demo.comm` (MPI ranks or simulated workers), :mod:`~mpi_demo.train` (the SPMD
driver, :func:`run_training`), :mod:`~mpi_demo.trace` and :mod:`~mpi_demo.checkpoint`;
:mod:`~mpi_demo.cli` is the command line. docs/demo.md and docs/trace.md describe them.

Importing this package imports neither NumPy nor MPI; ``run_training`` and
``TrainConfig`` are loaded on first use.
"""

from __future__ import annotations

__all__ = ["TrainConfig", "TrainResult", "run_training"]


def __getattr__(name: str):
    if name == "TrainConfig":
        from mpi_demo.config import TrainConfig

        return TrainConfig
    if name in ("run_training", "TrainResult"):
        from mpi_demo import train

        return getattr(train, name)
    raise AttributeError(f"module 'mpi_demo' has no attribute {name!r}")
