"""Hypothesis strategies shared by the tests: float32 vectors rich in edge values."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal
F32_SUB = float(np.float32(1e-45))  # smallest subnormal

#: Values that exercise the edges of the criterion and of quantization.
EDGE_VALUES = [
    0.0,
    -0.0,
    F32_SUB,
    -F32_SUB,
    F32_TINY,
    -F32_TINY,
    1.0,
    -1.0,
    1.4142135,  # float32(sqrt 2): mantissa 0x3504F3, rounds up
    1.4142134,  # one ulp below: rounds down
    2.0**-15,
    2.0**-16,
    F32_MAX,
    -F32_MAX,
    3e38,
    1e19,  # r*r overflows to inf
    1e-23,  # r*r underflows to 0
]


def float32s(min_value=None, max_value=None, edge=True):
    """Finite float32 scalars, with the edge values drawn often."""
    base = st.floats(
        min_value=min_value, max_value=max_value, width=32, allow_nan=False, allow_infinity=False
    )
    if not edge:
        return base
    edges = [
        x
        for x in EDGE_VALUES
        if (min_value is None or x >= min_value) and (max_value is None or x <= max_value)
    ]
    return st.one_of(base, st.sampled_from(edges))


def vectors(n, min_value=None, max_value=None, edge=True):
    """float32[n] with finite elements."""
    return hnp.arrays(np.float32, n, elements=float32s(min_value, max_value, edge))


def dyadic_vectors(n, scale=2.0**-4, max_int=64):
    """float32[n] of small integers times a power of two: sums are exact."""
    return hnp.arrays(
        np.float32, n, elements=st.integers(-max_int, max_int).map(lambda i: np.float32(i * scale))
    )


def hyperparameters():
    """(alpha, zeta, tau) drawn to include the defaults and edges."""
    alpha = st.one_of(st.sampled_from([2.0, 1.0, 0.5, 1e-3, 1e3]), st.floats(2.0**-20, 2.0**20, width=32))
    zeta = st.one_of(st.sampled_from([0.999, 0.0, 1.0, 0.5]), st.floats(0.0, 1.0, width=32))
    tau = st.one_of(st.just(0.0), st.sampled_from([1e-3, 1.0, 2.0**-15]), st.floats(0.0, 16.0, width=32))
    return st.tuples(alpha, zeta, tau)
