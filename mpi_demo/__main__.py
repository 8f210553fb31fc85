"""``python -m mpi_demo``: see :mod:`mpi_demo.cli`.

BLAS and Numba are limited to one thread per process unless the environment says
otherwise: under mpiexec the ranks already use the cores, and one thread keeps every
rank's arithmetic the same from run to run.
"""

import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from mpi_demo.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
