"""What every command line of the project shares: one-line errors, exit status 2, ``--version``.

argparse prints its usage block above every error, and under ``mpiexec -n P`` every rank
prints it again. Here an error is one line, ``PROG: error: MESSAGE``, printed once (by
rank 0 of an MPI launch, found from the launcher's environment, or by a plain process),
and the exit status is 2 before any work starts. Every command also answers ``--version``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from vgc_ref._version import __version__

#: Exit status of a bad argument or an unusable input file, for every command.
EXIT_USAGE = 2

#: Variables through which MPI launchers tell a process its rank (MPICH/Hydra, Open MPI, PMIx).
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
#: ... and its rank among the processes on its own host (MPICH/Hydra, Open MPI).
LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK")


def _env_int(names: tuple[str, ...]) -> int | None:
    for var in names:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return None


def launcher_rank() -> int | None:
    """This process's rank in an MPI launch, from the environment; None outside one.

    Read without importing MPI, so an argument error never starts it.
    """
    return _env_int(RANK_VARIABLES)


def say_error(prog: str, message: str, per_host: bool = False) -> None:
    """Print ``PROG: error: MESSAGE`` on stderr once per job (rank 0, or a plain process).

    ``per_host``: for a check whose outcome may differ between hosts (a path), the first
    rank of every other host prints it too, naming its rank, so that no host fails
    silently.
    """
    rank = launcher_rank()
    if rank in (None, 0):
        print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    elif per_host and _env_int(LOCAL_RANK_VARIABLES) == 0:
        print(f"{prog}: error (rank {rank}): {message}", file=sys.stderr, flush=True)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block), printed once per job; exit status 2.

    Adds ``--version``. Sub-commands made with ``add_subparsers`` are of this class too.
    """

    def __init__(self, *args, version: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if version:
            self.add_argument("--version", action="version", version=f"%(prog)s (vgc_ref {__version__})")

    def error(self, message: str) -> NoReturn:
        say_error(self.prog, message)
        self.exit(EXIT_USAGE)


def usage_error(prog: str, message: str, per_host: bool = False) -> NoReturn:
    """One line, exit status 2: for errors found after parsing, before any work."""
    say_error(prog, message, per_host)
    raise SystemExit(EXIT_USAGE)


def output_file_problem(path: str) -> str | None:
    """Why ``path`` cannot be written as a new or replaced file, or None when it can.

    Checked before long work starts: the path is not a directory, its directory exists
    and is writable, and an existing file there is writable.
    """
    p = os.path.abspath(path)
    parent = os.path.dirname(p)
    if os.path.isdir(p):
        return "is a directory; give a file path"
    if not os.path.isdir(parent):
        return f"directory {parent} does not exist"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable"
    if os.path.exists(p) and not os.access(p, os.W_OK):
        return "the file exists and is not writable"
    return None


def input_file_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as a file, or None when it can."""
    if os.path.isdir(path):
        return "is a directory, not a file"
    if not os.path.exists(path):
        return "no such file"
    if not os.access(path, os.R_OK):
        return "the file is not readable"
    return None
