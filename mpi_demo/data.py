"""Data sets of the demo: a seeded synthetic task (the default) and scikit-learn's digits.

Both are small enough to hold in memory on every rank; every rank builds the same
arrays from the same seed, so nothing is sent over MPI but gradients.

Synthetic task (``--dataset synthetic``)
    Each of C classes owns K Gaussian clusters in an 8-dimensional latent space; a point
    is mapped to F features by a fixed random linear map followed by tanh, and Gaussian
    noise is added to every feature. A fraction of the labels is then replaced by a
    random class. Clusters of different classes interleave, so the task is not linearly
    separable (a logistic regression reaches about 60 % test accuracy on the defaults,
    a 128-64 MLP about 80 %); the label noise caps every model below 100 %.

Digits (``--dataset digits``)
    The 1,797 8x8 handwritten digits that scikit-learn ships (no download); needs the
    optional dependency scikit-learn (``pip install -e '.[digits]'``).

Features are standardised with the training split's mean and standard deviation, and
returned as float32; labels as int64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Sub-stream tags of the seed (numpy SeedSequence entropy [seed, tag]).
DATA_STREAM = 0
INIT_STREAM = 1
ORDER_STREAM = 2

DATASETS = ("synthetic", "digits")
#: Size of scikit-learn's digits data set.
DIGITS_SAMPLES = 1797

#: Dimension of the synthetic task's latent space.
LATENT_DIM = 8


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
    seed: int,
    n_samples: int,
    n_features: int,
    n_classes: int,
    clusters_per_class: int = 4,
    label_noise: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """The raw synthetic samples (float64[N, F]) and labels (int64[N]), from ``seed`` alone."""
    rng = np.random.default_rng([seed, DATA_STREAM])
    n_clusters = n_classes * clusters_per_class
    centers = 2.0 * rng.normal(0.0, 1.0, (n_clusters, LATENT_DIM))
    cluster_label = np.repeat(np.arange(n_classes, dtype=np.int64), clusters_per_class)
    cluster = rng.integers(0, n_clusters, n_samples)
    z = centers[cluster] + rng.normal(0.0, 1.0, (n_samples, LATENT_DIM))
    mix = rng.normal(0.0, 1.0 / np.sqrt(LATENT_DIM), (LATENT_DIM, n_features))
    x = np.tanh(z @ mix) + 0.3 * rng.normal(0.0, 1.0, (n_samples, n_features))
    y = cluster_label[cluster]
    flip = rng.random(n_samples) < label_noise
    y[flip] = rng.integers(0, n_classes, int(flip.sum()))
    return x, y


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


def split_standardise(x: np.ndarray, y: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, ...]:
    """Shuffle once with ``seed``, hold out ``n_test`` samples, standardise with train statistics."""
    order = np.random.default_rng([seed, DATA_STREAM, 1]).permutation(x.shape[0])
    x, y = x[order], y[order]
    x_test, y_test = x[:n_test], y[:n_test]
    x_train, y_train = x[n_test:], y[n_test:]
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0  # constant pixels of the digits
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
    """Build the named data set (``"synthetic"`` or ``"digits"``) deterministically from ``seed``.

    ``n_samples``, ``n_features`` and ``n_classes`` apply to the synthetic task only.
    """
    if name == "synthetic":
        x, y = synthetic_task(seed, n_samples, n_features, n_classes)
        classes = n_classes
    elif name == "digits":
        x, y = _digits()
        classes = 10
    else:
        raise ValueError(f"dataset {name!r}: must be one of {DATASETS}")
    n_test = round(test_fraction * x.shape[0])
    x_train, y_train, x_test, y_test = split_standardise(x, y, n_test, seed)
    return Dataset(name, x_train, y_train, x_test, y_test, classes)


def epoch_order(seed: int, epoch: int, n_train: int) -> np.ndarray:
    """The order of the training samples in ``epoch``: int64[n_train], from (seed, epoch) alone."""
    return np.random.default_rng([seed, ORDER_STREAM, epoch]).permutation(n_train).astype(np.int64)


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
