"""MNIST-1D (Greydanus and Kalai, 2020) as stored float32 arrays: the same on every machine.

The data set is defined by the file ``mpi_demo/mnist1d.npz`` (docs/demo.md "MNIST-1D"),
not by a generator run on the host: the ``mnist1d`` package computes its signals in
float64 with the host's libm and SciPy, whose last bits differ between CPUs (an AVX2 and an
AVX-512 machine hash its float64 output differently), while the float32 values the demo
trains on are a property of the data. The file holds them, with the int64 labels:

========== ============= ==========================================================
array      shape, dtype  what
========== ============= ==========================================================
x          [4000, 40] f4 the package's canonical training signals (seed 42)
y          [4000] i8     their labels 0..9
x_test     [1000, 40] f4 the canonical test signals
y_test     [1000] i8
x_test_10k [10000, 40] f4 10,000 more test signals, same settings, seed 43, scaled with
                         the canonical set's mean and standard deviation
y_test_10k [10000] i8
========== ============= ==========================================================

``tools/make_mnist1d.py`` wrote the file (its docstring is the provenance) and
tests/test_mnist1d_data.py checks that the package still regenerates it within float32
rounding where the package is installed. At run time nothing but NumPy reads the file, and
:func:`load_arrays` refuses it, in one line, unless its arrays hash to :data:`SHA256`.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from mpi_demo.data import DatasetUnavailableError

#: The stored arrays.
PATH = Path(__file__).with_name("mnist1d.npz")
#: The arrays in the file, with their dtypes and shapes, in the order :func:`digest` hashes them.
ARRAYS = {
    "x": (np.dtype("<f4"), (4000, 40)),
    "y": (np.dtype("<i8"), (4000,)),
    "x_test": (np.dtype("<f4"), (1000, 40)),
    "y_test": (np.dtype("<i8"), (1000,)),
    "x_test_10k": (np.dtype("<f4"), (10000, 40)),
    "y_test_10k": (np.dtype("<i8"), (10000,)),
}
#: SHA-256 of the six arrays' little-endian bytes, C order, in the order of :data:`ARRAYS`.
SHA256 = "49f41f345576a0dfcb3fecffe38471cfd0f303687db0ce58021f3292d5dbcfe9"
LENGTH, CLASSES = 40, 10
#: The test split each data set name uses (docs/demo.md "MNIST-1D").
TEST_SPLITS = {"mnist1d": "x_test", "mnist1d-10k": "x_test_10k"}


class Mnist1dError(DatasetUnavailableError):
    """The stored MNIST-1D file is missing, unreadable or not the pinned arrays (the demo's
    command line prints it as one line and exits 2)."""


def digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the arrays named in :data:`ARRAYS`, as their little-endian dtypes, C order."""
    h = hashlib.sha256()
    for name, (dtype, _) in ARRAYS.items():
        h.update(np.ascontiguousarray(arrays[name], dtype=dtype).tobytes())
    return h.hexdigest()


_CACHE: dict[str, dict[str, np.ndarray]] = {}


def load_arrays(check: bool = True) -> dict[str, np.ndarray]:
    """The six stored arrays by name (cached per process), checked against :data:`SHA256`.

    Raises
    ------
    Mnist1dError
        When the file is missing or unreadable, an array is missing or has another dtype or
        shape, or (with ``check``) the arrays do not hash to :data:`SHA256`.
    """
    if "data" in _CACHE:
        return _CACHE["data"]
    try:
        with np.load(PATH, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in ARRAYS}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise Mnist1dError(f"{PATH}: cannot read the MNIST-1D arrays ({err})") from err
    for name, (dtype, shape) in ARRAYS.items():
        if arrays[name].dtype != dtype or arrays[name].shape != shape:
            raise Mnist1dError(
                f"{PATH}: array {name} is {arrays[name].dtype}{list(arrays[name].shape)}, "
                f"not {dtype}{list(shape)}"
            )
    if check:
        got = digest(arrays)
        if got != SHA256:
            raise Mnist1dError(f"{PATH}: arrays with SHA-256 {got}, not the pinned {SHA256}")
        _CACHE["data"] = arrays
    return arrays


def load(name: str = "mnist1d") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float32 x[4000, 40], int64 y, and the test split of data set ``name`` (see :data:`TEST_SPLITS`)."""
    a = load_arrays()
    test = TEST_SPLITS[name]
    return a["x"], a["y"], a[test], a["y" + test[1:]]
