"""The demo's random numbers: SplitMix64 as a counter-based generator (docs/demo.md "Generator").

Every random number of the demo (data set, initial parameters, epoch orders) is a pure
function of the seed, a few integer tags naming its stream, and its index in the stream::

    GOLDEN = 0x9E3779B97F4A7C15
    mix(z):  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
             z = (z ^ (z >> 27)) * 0x94D049BB133111EB
             return z ^ (z >> 31)
    key(seed, t1, t2, ...):  K = mix(seed + GOLDEN);  for each tag t: K = mix((K ^ t) + GOLDEN)
    bits(K, i)        = mix(K + (i + 1) * GOLDEN)
    uniform(K, i)     = float64(bits(K, i) >> 11) * 2^-53                 in [0, 1)
    normal(K, i)      = (0.0 + uniform(K, 12i) + ... + uniform(K, 12i+11)) - 6.0   (in order)
    below(K, i, m)    = ((bits(K, i) >> 32) * m) >> 32                    in [0, m), m <= 2^32
    permutation(K, n) = indices 0..n-1 sorted by bits(K, i), ties by the lower index

All integer arithmetic is on unsigned 64-bit integers modulo 2^64. NumPy wraps uint64
array arithmetic silently, but warns on scalar overflow, so everything here works on
1-D arrays, under ``np.errstate(over="ignore")`` for good measure. Nothing depends on
NumPy's own generators, so another implementation reproduces these numbers from the
formulas above alone.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
#: Uniforms added per normal deviate (Irwin-Hall with 12 terms: mean 6, variance 1).
NORMAL_TERMS = 12

_U64 = np.uint64


def _u64(values) -> np.ndarray:
    """A 1-D uint64 array of Python ints (each reduced mod 2^64) or of a uint64 array."""
    if isinstance(values, np.ndarray) and values.dtype == np.uint64:
        return values.ravel()
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iu" or (values.size and values.min() < 0):
            raise ValueError(f"indices must be non-negative integers, got dtype {values.dtype}")
        return values.astype(np.uint64).ravel()
    return np.array([int(v) & MASK64 for v in np.atleast_1d(values)], dtype=np.uint64)


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on every element of a uint64 array (a new array)."""
    z = _u64(z).copy()
    with np.errstate(over="ignore"):
        z ^= z >> _U64(30)
        z *= _U64(MIX1)
        z ^= z >> _U64(27)
        z *= _U64(MIX2)
        z ^= z >> _U64(31)
    return z


def key(seed: int, *tags: int) -> int:
    """The stream key of (seed, tags...): a Python int in [0, 2^64)."""
    k = int(mix(_u64([(int(seed) + GOLDEN) & MASK64]))[0])
    for t in tags:
        k = int(mix(_u64([((k ^ int(t)) + GOLDEN) & MASK64]))[0])
    return k


def _indices(i) -> np.ndarray:
    if isinstance(i, (int, np.integer)):
        if i < 0:
            raise ValueError(f"index {i}: must be >= 0")
        return _u64([int(i)])
    return _u64(np.asarray(i))


def bits(k: int, i) -> np.ndarray:
    """bits(K, i) = mix(K + (i + 1) * GOLDEN) for every index in ``i`` (uint64, flat)."""
    idx = _indices(i)
    with np.errstate(over="ignore"):
        z = _U64(k & MASK64) + (idx + _U64(1)) * _U64(GOLDEN)
    return mix(z)


def uniform(k: int, i) -> np.ndarray:
    """uniform(K, i) = float64(bits >> 11) * 2^-53, exact, in [0, 1) (float64, flat)."""
    return (bits(k, i) >> _U64(11)).astype(np.float64) * 2.0**-53


def normal(k: int, i) -> np.ndarray:
    """normal(K, i): the sum of uniforms 12i .. 12i+11, added in order from 0.0, minus 6.0."""
    idx = _indices(i)
    u = uniform(k, (idx[:, None] * _U64(NORMAL_TERMS) + np.arange(NORMAL_TERMS, dtype=np.uint64)).ravel())
    u = u.reshape(idx.size, NORMAL_TERMS)
    acc = np.zeros(idx.size, np.float64)
    for j in range(NORMAL_TERMS):  # in order: the sum's rounding is part of the definition
        acc = acc + u[:, j]
    return acc - 6.0


#: Elements drawn at a time by :func:`he_normal32` (the normal's temporaries take about
#: 400 bytes an element: 26 MiB at a time, whatever the layer's size).
DRAW_CHUNK = 1 << 16


def he_normal32(k: int, n_in: int, n_out: int) -> np.ndarray:
    """``float32(normal(K, i) * sqrt(2.0 / n_in))`` for i = 0 .. n_in * n_out - 1 (float32, flat).

    Drawn DRAW_CHUNK elements at a time: every element depends on its index alone, so the
    values are those of one call over every index, with a bounded peak of memory.
    """
    n = n_in * n_out
    scale = np.sqrt(2.0 / n_in)
    out = np.empty(n, np.float32)
    for start in range(0, n, DRAW_CHUNK):
        stop = min(start + DRAW_CHUNK, n)
        out[start:stop] = normal(k, np.arange(start, stop, dtype=np.uint64)) * scale
    return out


def below(k: int, i, m: int) -> np.ndarray:
    """below(K, i, m) = ((bits >> 32) * m) >> 32, an integer in [0, m) (int64, flat)."""
    if not 1 <= m <= 1 << 32:
        raise ValueError(f"m {m}: must be in [1, 2^32]")
    hi = bits(k, i) >> _U64(32)  # < 2^32, so hi * m < 2^64: no wrap
    return ((hi * _U64(m)) >> _U64(32)).astype(np.int64)


def permutation(k: int, n: int) -> np.ndarray:
    """The indices 0..n-1 sorted by bits(K, i) ascending, ties by the lower index (int64[n])."""
    if n < 0:
        raise ValueError(f"n {n}: must be >= 0")
    return np.argsort(bits(k, np.arange(n, dtype=np.uint64)), kind="stable").astype(np.int64)
