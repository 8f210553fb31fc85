"""What every command line of the project shares: one-line errors, exit status 2, ``--version``.

argparse prints its usage block above every error, and under ``mpiexec -n P`` every rank
prints it again. Here an error is one line, ``PROG: error: MESSAGE``, printed once (by
rank 0 of an MPI launch, found from the launcher's environment, or by a plain process),
and the exit status is 2 before any work starts. Every command also answers ``--version``.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
from typing import NoReturn

from vgc_ref._version import __version__

#: Exit status of a bad argument or an unusable input file, for every command.
EXIT_USAGE = 2

#: With this variable set to 1, a command parses its arguments and exits 0 (see ArgumentParser).
PARSE_ONLY = "VGC_PARSE_ONLY"

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

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """argparse's, then: with ``VGC_PARSE_ONLY=1`` in the environment, print
        ``PROG: arguments parsed`` and exit 0 before any work (tests/test_doc_commands.py
        checks every command the docs show this way: its module, sub-command and options)."""
        parsed = super().parse_args(args, namespace)
        if os.environ.get(PARSE_ONLY) == "1":
            print(f"{self.prog}: arguments parsed", flush=True)
            raise SystemExit(0)
        return parsed

    def error(self, message: str) -> NoReturn:
        say_error(self.prog, message)
        self.exit(EXIT_USAGE)


def usage_error(prog: str, message: str, per_host: bool = False) -> NoReturn:
    """One line, exit status 2: for errors found after parsing, before any work."""
    say_error(prog, message, per_host)
    raise SystemExit(EXIT_USAGE)


def _probe_directory(directory: str) -> str | None:
    """Create and remove a file in ``directory``: None when that worked, else why not.

    Writability is proven by writing, not by ``os.access``: ``os.access`` says yes to root
    on read-only mounts, /proc and /sys, and says nothing about a full disk.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=".vgc-write-probe-", dir=directory)
    except OSError as exc:
        return f"directory {directory} is not writable ({exc.strerror or exc})"
    try:
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return f"directory {directory} cannot take a file ({exc.strerror or exc})"
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass
    return None


def output_file_problem(path: str) -> str | None:
    """Why ``path`` cannot be written as a new or replaced file, or None when it can.

    Checked before long work starts: the path is not empty and not a directory, an existing
    path is a regular file (not a device, a FIFO or a socket), its directory exists, and a
    file can be created, written and removed there (the project writes every output file
    aside and renames it into place, so that is the operation that must work).
    """
    if not path:
        return "is empty; give a file path"
    p = os.path.abspath(path)
    parent = os.path.dirname(p)
    if os.path.isdir(p):
        return "is a directory; give a file path"
    if os.path.exists(p) and not os.path.isfile(p):
        return "exists and is not a regular file"
    if not os.path.isdir(parent):
        return f"directory {parent} does not exist"
    return _probe_directory(parent)


def output_dir_problem(path: str) -> str | None:
    """Why ``path`` cannot be used (or created) as an output directory, or None when it can.

    An existing directory must take a probe file; a missing one is created, with its
    parents, under the nearest existing ancestor, which must take a probe file.
    """
    if not path:
        return "is empty; give a directory path"
    p = os.path.abspath(path)
    if os.path.exists(p):
        if not os.path.isdir(p):
            return "exists and is not a directory"
        return _probe_directory(p)
    ancestor = os.path.dirname(p)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        return f"{ancestor} is not a directory"
    return _probe_directory(ancestor)


def same_path(a: str, b: str) -> bool:
    """Whether two output options name the same file (after resolving links and ``..``)."""
    return os.path.realpath(a) == os.path.realpath(b)


def plain_name_problem(name: object) -> str | None:
    """Why ``name`` is not the plain name of one entry of a directory, or None.

    "not a name": anything but a non-empty string; "not a plain name": a name with a path
    separator or a NUL, or ``.`` or ``..``. A plain name never leads out of its directory
    by itself (a link still may: :func:`regular_file_problem` follows links).
    """
    if not isinstance(name, str) or not name:
        return "not a name"
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        return "not a plain name"
    return None


def regular_file_problem(
    path: str | os.PathLike, root: str, directly: bool = False
) -> tuple[str, str] | None:
    """Why ``path`` is not a regular file inside ``root`` (a resolved directory; links
    followed), as (kind, detail), or None. Kinds: "outside" (detail: the real path; with
    ``directly``, anything but an entry of root itself is outside), "missing",
    "unreadable" (detail: the reason), "not regular" (a directory, a device, a FIFO).
    Callers word the refusal in their own terms."""
    real = os.path.realpath(path)
    inside = os.path.dirname(real) == root if directly else real.startswith(root.rstrip(os.sep) + os.sep)
    if not inside:
        return "outside", real
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return "missing", ""
    except OSError as err:
        return "unreadable", str(err.strerror or err)
    if not stat.S_ISREG(mode):
        return "not regular", ""
    return None


def input_file_problem(path: str) -> str | None:
    """Why ``path`` cannot be read as a file, or None when it can."""
    if not path:
        return "is empty; give a file path"
    if os.path.isdir(path):
        return "is a directory, not a file"
    if not os.path.exists(path):
        return "no such file"
    if not os.access(path, os.R_OK):
        return "the file is not readable"
    return None
