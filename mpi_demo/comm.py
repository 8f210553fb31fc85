"""Two communicators with one interface: MPI ranks, or P virtual workers in one process.

The driver (:mod:`mpi_demo.train`) is written once against this interface:

* ``size`` -- P, the number of workers;
* ``local_ranks`` -- the workers this process runs: ``[rank]`` under MPI, ``0 .. P-1``
  in a simulation;
* ``is_root`` -- whether this process runs rank 0 (it prints, writes the trace and the
  checkpoint);
* ``allgather(items)`` -- ``items`` holds one object per local rank; every process gets
  the list of all P objects in rank order (objects may be empty byte strings);
* ``gather(items)`` -- the same list, on the root only (None elsewhere);
* ``bcast(obj)`` -- the root's object, everywhere;
* ``abort(code)`` -- end the whole job now.

A simulation does the same arithmetic as MPI: every worker computes its forward and
backward pass on its own shard with the same array shapes, and the messages are summed in
rank order by the same function. That is what makes ``--simulate-ranks P`` an oracle for
``mpiexec -n P``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def mpi_env() -> dict[str, str]:
    """Environment for an mpiexec job of the demo: one thread per rank, and ranks that yield
    the CPU while they wait (more ranks than cores share the machine)."""
    env = dict(os.environ)
    env.update(
        NUMBA_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MPIR_CVAR_ENABLE_HEAVY_YIELD="1",
    )
    return env


#: Seconds a failing rank waits after writing its error, before MPI_Abort.
ABORT_GRACE_S = 0.5


class SimulatedComm:
    """P virtual workers in this process; collectives are list operations."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size {size}: a job needs at least one worker")
        self.size = size
        self.local_ranks = list(range(size))
        self.is_root = True
        self.rank = 0  # the rank whose view this process reports

    def allgather(self, items: list[Any]) -> list[Any]:
        """All P objects in rank order (the simulation holds them already)."""
        if len(items) != self.size:
            raise ValueError(f"allgather: {len(items)} items for {self.size} workers")
        return list(items)

    def gather(self, items: list[Any]) -> list[Any]:
        return self.allgather(items)

    def bcast(self, obj: Any) -> Any:
        return obj

    def abort(self, code: int = 1) -> None:
        sys.exit(code)


class MPIComm:
    """One rank of an MPI job (mpi4py's lowercase, pickle-based collectives).

    Importing this module does not initialise MPI; constructing an MPIComm does.
    """

    def __init__(self) -> None:
        from mpi4py import MPI  # initialises MPI

        self._mpi = MPI
        self._comm = MPI.COMM_WORLD
        self.size = self._comm.Get_size()
        self.rank = self._comm.Get_rank()
        self.local_ranks = [self.rank]
        self.is_root = self.rank == 0

    def allgather(self, items: list[Any]) -> list[Any]:
        (item,) = items
        return self._comm.allgather(item)

    def gather(self, items: list[Any]) -> list[Any] | None:
        (item,) = items
        return self._comm.gather(item, root=0)

    def bcast(self, obj: Any) -> Any:
        return self._comm.bcast(obj, root=0)

    def abort(self, code: int = 1) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # The launcher forwards each rank's output through a pipe; MPI_Abort tears the
        # job down at once and can drop what this rank just wrote (the error line the
        # user needs). A moment's grace lets it through; the job still ends promptly.
        time.sleep(ABORT_GRACE_S)
        self._comm.Abort(code)
