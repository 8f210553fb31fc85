"""Data sets of the demo: a seeded synthetic task (the default) and scikit-learn's digits.

Both are small enough to hold in memory on every rank; every rank builds the same
arrays from the same seed, so nothing is sent over MPI but gradients.

Synthetic task (``--dataset synthetic``)
    Each of C classes owns 4 clusters in an 8-dimensional latent space; a point is
    mapped to F features by a fixed random linear map and the squashing a / (1 + |a|),
    and noise is added to every feature. 5 % of the labels are then replaced by a random
    class. Clusters of different classes interleave, so the task is not linearly
    separable (a linear classifier reaches about 60 % test accuracy on the defaults, a
    128-64 MLP over 80 %); the label noise caps every model below 100 %.

Digits (``--dataset digits``)
    The 1,797 8x8 handwritten digits that scikit-learn ships (no download); needs the
    optional dependency scikit-learn (``pip install -e '.[digits]'``).

MNIST-1D (``--dataset mnist1d`` and ``mnist1d-10k``)
    Stored float32 arrays (:mod:`mpi_demo.mnist1d`): 4,000 training signals and 1,000
    (or 10,000) test signals, used as stored.

Features are standardised with the training split's mean and standard deviation, and
returned as float32; labels as int64.

Every number here follows docs/demo.md "Data and initial parameters" to the bit: random
numbers from :mod:`mpi_demo.rng` (not NumPy's generators), float64 arithmetic in the
written order (sums as explicit loops, never ``np.sum``'s pairwise order or BLAS), no
library function but ``sqrt`` (correctly rounded everywhere), one rounding to float32 at
the end. So the data set is the same bytes on every machine and NumPy version.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpi_demo import rng

#: First tag of every stream key (docs/demo.md): key(seed, STREAM, ...).
DATA_STREAM = 0
INIT_STREAM = 1
ORDER_STREAM = 2
#: Second tags of the data streams, key(seed, DATA_STREAM, tag).
CENTRES, CLUSTERS, LATENT, MAP, NOISE, FLIP, FLIP_LABEL, SPLIT = range(8)

DATASETS = ("synthetic", "digits", "mnist1d", "mnist1d-10k")
#: The MNIST-1D data sets: the canonical 1,000 test signals, or 10,000 (mpi_demo/mnist1d.py);
#: both have the same 4,000 training signals.
MNIST1D = ("mnist1d", "mnist1d-10k")
MNIST1D_TRAIN = 4000
#: Size of scikit-learn's digits data set.
DIGITS_SAMPLES = 1797

#: Dimension of the synthetic task's latent space, clusters per class, label noise.
LATENT_DIM = 8
CLUSTERS_PER_CLASS = 4
LABEL_NOISE = 0.05
FEATURE_NOISE = 0.3


class DatasetUnavailableError(RuntimeError):
    """An optional data set's dependency is missing."""


@dataclass(frozen=True)
class Dataset:
    """Train and test split of a classification task."""

    name: str
    x_train: np.ndarray  # float32[N_train, F]
    y_train: np.ndarray  # int64[N_train]
    x_test: np.ndarray  # float32[N_test, F]
    y_test: np.ndarray  # int64[N_test]
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def synthetic_task(
    seed: int, n_samples: int, n_features: int, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The raw synthetic samples (float64[N, F]) and labels (int64[N]), from ``seed`` alone.

    docs/demo.md "Synthetic task", line by line; every float64 operation as written.
    """
    n, f_dim, d_dim = n_samples, n_features, LATENT_DIM
    n_clusters = CLUSTERS_PER_CLASS * n_classes
    idx = np.arange  # shorthand for the stream indices below

    k_c = rng.key(seed, DATA_STREAM, CENTRES)
    centre = 2.0 * rng.normal(k_c, idx(n_clusters * d_dim, dtype=np.uint64)).reshape(n_clusters, d_dim)
    k_a = rng.key(seed, DATA_STREAM, CLUSTERS)
    cluster = rng.below(k_a, idx(n, dtype=np.uint64), n_clusters)  # int64[N]
    k_z = rng.key(seed, DATA_STREAM, LATENT)
    z = centre[cluster] + rng.normal(k_z, idx(n * d_dim, dtype=np.uint64)).reshape(n, d_dim)
    k_m = rng.key(seed, DATA_STREAM, MAP)
    mix = rng.normal(k_m, idx(d_dim * f_dim, dtype=np.uint64)).reshape(d_dim, f_dim) * (1.0 / np.sqrt(8.0))
    a = np.zeros((n, f_dim), np.float64)
    for d in range(d_dim):  # sum over d in order, from 0.0: no BLAS
        a = a + z[:, d, None] * mix[None, d, :]
    k_n = rng.key(seed, DATA_STREAM, NOISE)
    noise = rng.normal(k_n, idx(n * f_dim, dtype=np.uint64)).reshape(n, f_dim)
    x = a / (1.0 + np.abs(a)) + FEATURE_NOISE * noise
    y = cluster // CLUSTERS_PER_CLASS
    k_f, k_l = rng.key(seed, DATA_STREAM, FLIP), rng.key(seed, DATA_STREAM, FLIP_LABEL)
    flip = rng.uniform(k_f, idx(n, dtype=np.uint64)) < LABEL_NOISE
    y = np.where(flip, rng.below(k_l, idx(n, dtype=np.uint64), n_classes), y)
    return x, y.astype(np.int64)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DatasetUnavailableError(
            "--dataset digits needs scikit-learn, an optional dependency: "
            "pip install scikit-learn (or pip install -e '.[digits]')"
        ) from err
    bunch = load_digits()
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64)


def _ordered_mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of float64[N, F]: the mean and standard deviation, sums in row order from 0.0."""
    n = x.shape[0]
    total = np.zeros(x.shape[1], np.float64)
    for row in x:
        total = total + row
    mean = total / n
    total = np.zeros(x.shape[1], np.float64)
    for row in x:
        dev = row - mean
        total = total + dev * dev
    std = np.sqrt(total / n)
    return mean, np.where(std == 0.0, 1.0, std)  # constant pixels of the digits


def split_standardise(x: np.ndarray, y: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, ...]:
    """Shuffle once with ``seed``, hold out ``n_test`` samples, standardise with train statistics.

    docs/demo.md "Split and standardisation": ``order = permutation(key(seed, 0, 7), N)``,
    its first ``n_test`` samples are the test split; mean and variance of the training
    split are sums in its order; ``float32((x - mean) / std)``.
    """
    order = rng.permutation(rng.key(seed, DATA_STREAM, SPLIT), x.shape[0])
    x, y = x[order], y[order]
    x_test, y_test = x[:n_test], y[:n_test]
    x_train, y_train = x[n_test:], y[n_test:]
    mean, std = _ordered_mean_std(x_train)
    x_train = ((x_train - mean) / std).astype(np.float32)
    x_test = ((x_test - mean) / std).astype(np.float32)
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


def load_dataset(
    name: str,
    seed: int,
    n_samples: int = 6000,
    n_features: int = 32,
    n_classes: int = 8,
    test_fraction: float = 0.2,
) -> Dataset:
    """Build the named data set (one of :data:`DATASETS`) deterministically from ``seed``.

    ``n_samples``, ``n_features`` and ``n_classes`` apply to the synthetic task only.
    """
    if name == "synthetic":
        x, y = synthetic_task(seed, n_samples, n_features, n_classes)
        classes = n_classes
    elif name == "digits":
        x, y = _digits()
        classes = 10
    elif name in MNIST1D:
        # The stored float32 arrays with the package's own split and scaling
        # (mpi_demo/mnist1d.py); no shuffle, no per-feature standardisation: a convolution
        # sees the signal as generated.
        from mpi_demo import mnist1d

        x, y, x_test, y_test = mnist1d.load(name)
        return Dataset(name, x, y, x_test, y_test, mnist1d.CLASSES)
    else:
        raise ValueError(f"dataset {name!r}: must be one of {DATASETS}")
    n_test = n_test_samples(name, x.shape[0], test_fraction)
    x_train, y_train, x_test, y_test = split_standardise(x, y, n_test, seed)
    return Dataset(name, x_train, y_train, x_test, y_test, classes)


def hold_out(data: Dataset, n_validation: int) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """Carve a validation split from the training data: its last ``n_validation`` samples.

    The training split is already in a random order (the seeded shuffle of synthetic and
    digits, the package's shuffle of mnist1d), so its tail is a random sample; it does not
    depend on the run's seed for mnist1d and digits. Returns the data set with the
    shortened training split, and the validation inputs and labels.
    """
    n = data.x_train.shape[0] - n_validation
    shortened = Dataset(
        data.name, data.x_train[:n], data.y_train[:n], data.x_test, data.y_test, data.n_classes
    )
    return shortened, data.x_train[n:], data.y_train[n:]


def n_samples(name: str, synthetic_samples: int) -> int:
    """Train plus test samples of a data set (before any validation split)."""
    sizes = {"digits": DIGITS_SAMPLES, "mnist1d": MNIST1D_TRAIN + 1000, "mnist1d-10k": MNIST1D_TRAIN + 10000}
    return sizes.get(name, synthetic_samples)


def n_test_samples(name: str, samples: int, test_fraction: float) -> int:
    """Test samples of a data set: MNIST-1D's stored split, else ``round(test_fraction * samples)``."""
    if name in MNIST1D:
        return samples - MNIST1D_TRAIN
    return round(test_fraction * samples)


def epoch_order(seed: int, epoch: int, n_train: int) -> np.ndarray:
    """The order of the training samples in ``epoch``: ``permutation(key(seed, 2, epoch), n_train)``."""
    return rng.permutation(rng.key(seed, ORDER_STREAM, epoch), n_train)


def shard_bounds(batch: int, n_ranks: int) -> list[tuple[int, int]]:
    """Rank w's contiguous slice [start, stop) of a global mini-batch of ``batch`` samples.

    The first ``batch % n_ranks`` ranks get one sample more; every rank gets at least one
    (the caller checks ``batch >= n_ranks``).
    """
    base, extra = divmod(batch, n_ranks)
    bounds, start = [], 0
    for w in range(n_ranks):
        stop = start + base + (1 if w < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds
