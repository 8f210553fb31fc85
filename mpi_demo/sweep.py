"""``python -m mpi_demo sweep``: tune on validation, test on fresh seeds (docs/results.md).

    python -m mpi_demo sweep                  # the full study -> docs/results/, docs/results.md
    python -m mpi_demo sweep --quick          # a tiny study in about a minute -> sweep-quick/
    python -m mpi_demo sweep --reuse          # take runs of the same code from the cache

The study lives in :mod:`mpi_demo.study` (plan, runner, cache, protocol, statistics,
report); this module is its entry point.
"""

from __future__ import annotations

import sys

from mpi_demo.study.cli import add_arguments, main, run_cli

__all__ = ["add_arguments", "main", "run_cli"]

if __name__ == "__main__":
    sys.exit(main())
