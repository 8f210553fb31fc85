"""Hypothesis strategies shared by the tests.

The float32 strategies (edge values included) are the conformance suite's own, so the
project's tests and the suite other implementations run draw from the same inputs.
"""

from __future__ import annotations

from hypothesis import strategies as st

from vgc_ref.conformance.cases import F32_MAX, F32_SUB, F32_TINY
from vgc_ref.conformance.strategies import EDGE_VALUES, dyadic_vectors, float32s, vectors

__all__ = [
    "EDGE_VALUES",
    "F32_MAX",
    "F32_SUB",
    "F32_TINY",
    "dyadic_vectors",
    "float32s",
    "hyperparameters",
    "vectors",
]


def hyperparameters():
    """(alpha, zeta, tau) drawn to include the defaults and edges."""
    alpha = st.one_of(st.sampled_from([2.0, 1.0, 0.5, 1e-3, 1e3]), st.floats(2.0**-20, 2.0**20, width=32))
    zeta = st.one_of(st.sampled_from([0.999, 0.0, 1.0, 0.5]), st.floats(0.0, 1.0, width=32))
    tau = st.one_of(st.just(0.0), st.sampled_from([1e-3, 1.0, 2.0**-15]), st.floats(0.0, 16.0, width=32))
    return st.tuples(alpha, zeta, tau)
