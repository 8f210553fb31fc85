"""MNIST-1D (Greydanus and Kalai, 2020), generated locally and checked byte for byte.

The ``mnist1d`` package (PyPI, version 0.0.2.post1; ``pip install -e '.[mnist1d]'``)
builds the data set from ten templates with NumPy's legacy ``RandomState`` (seed 42) and
SciPy's interpolation: 4000 training and 1000 test signals of 40 samples, 10 classes,
already centred and scaled to unit standard deviation as a whole. Only its
``make_dataset`` is called, never its download path.

Those libraries' bytes could in principle differ between machines or versions, and the
demo's traces are an oracle only if the data are the same everywhere; so the generated
arrays' SHA-256 is pinned here (:data:`SHA256`) and :func:`load` refuses to go on, in
one line, when this machine generates other bytes.
"""

from __future__ import annotations

import hashlib

import numpy as np

#: SHA-256 of x (float64, C order) + y (int64) + x_test + y_test as generated.
SHA256 = "2377c0b18c9f643da2b39e66086395782aac2fcfdd678b89f55a22b17ec47631"
N_TRAIN, N_TEST, LENGTH, CLASSES = 4000, 1000, 40, 10


class Mnist1dError(RuntimeError):
    """The mnist1d package is missing, or it generated other bytes than the pinned ones."""


def digest(x, y, x_test, y_test) -> str:
    """SHA-256 of the four arrays as float64 / int64, C order, in that order."""
    h = hashlib.sha256()
    for a, dtype in ((x, np.float64), (y, np.int64), (x_test, np.float64), (y_test, np.int64)):
        h.update(np.ascontiguousarray(a, dtype=dtype).tobytes())
    return h.hexdigest()


def generate() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The package's default data set: float64 x[4000, 40], int64 y, x_test[1000, 40], y_test."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:
        raise Mnist1dError(
            "--dataset mnist1d needs the mnist1d package: pip install -e '.[mnist1d]'"
        ) from err
    state = np.random.get_state()  # noqa: NPY002 -- make_dataset reseeds the legacy global generator
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)  # noqa: NPY002 -- put it back as it was
    return (
        np.asarray(d["x"], np.float64),
        np.asarray(d["y"], np.int64),
        np.asarray(d["x_test"], np.float64),
        np.asarray(d["y_test"], np.int64),
    )


_CACHE: dict[str, tuple[np.ndarray, ...]] = {}


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The generated arrays after checking them against :data:`SHA256` (cached per process).

    Raises
    ------
    Mnist1dError
        When the package is missing or this machine generates other bytes.
    """
    if "data" not in _CACHE:
        arrays = generate()
        got = digest(*arrays)
        if got != SHA256:
            raise Mnist1dError(
                f"mnist1d generated data with SHA-256 {got}, not the pinned {SHA256}: "
                "this machine's NumPy/SciPy give other bytes, so traces would not be comparable"
            )
        _CACHE["data"] = arrays
    return _CACHE["data"]
