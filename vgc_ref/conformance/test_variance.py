"""Properties of the dense-layer gradient and variance term (docs/algorithm.md section 2).

g_W, s_W, g_b and s_b are bit-exact: every product and every addition is rounded to
float32 on its own (no FMA), the accumulator starts at +0.0 and the samples are added in
increasing order. The implementation is compared with the reference bit for bit on
random layers (edge values, batches long enough that the order of additions shows) and on
a table of hand-picked layers where one rule of the order decides the result. It is also
compared with the exact per-sample computation (a bound on float32 summation error: a
check of the formula that does not lean on the reference) and with the reference's
errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import vgc_ref as ref
from vgc_ref.conformance.compare import assert_same_outcome, call, compare_grad_var
from vgc_ref.conformance.variance_cases import EDGE_LAYERS

NAMES = ("g_W", "s_W", "g_b", "s_b")
EPS32 = 2.0**-24
F32 = np.float32

#: Values where the arithmetic shows: signed zeros, subnormals, the smallest normal,
#: products that round (1 + 2^-12 squared is 1 + 2^-11 + 2^-24), a large power of two.
EDGE_VALUES = (
    0.0,
    -0.0,
    1.0,
    -1.0,
    2.0**-149,
    -(2.0**-149),
    2.0**-126,
    3.0 * 2.0**-140,
    1.0 + 2.0**-12,
    -(1.0 + 2.0**-11),
    1.0 + 2.0**-23,
    0.1,
    3.0,
    2.0**24,
    2.0**-70,
)
#: |value| <= 2^28, so no product of squares (<= 2^112) and no sum overflows: no infinity
#: minus infinity, whose NaN's sign bit is the machine's own.
MAX_ABS = 2.0**28


@st.composite
def layers(draw):
    """x: float32[B, in] and D: float32[B, out] holding a mix of edge values, ordinary
    values of many magnitudes and subnormals; B up to 400, so that the order shows (then
    narrow layers: the order is per output element, and simulated GPUs are slow)."""
    batch = draw(st.one_of(st.integers(1, 12), st.integers(100, 400)), label="B")
    widest = 6 if batch <= 12 else 2
    n_in = draw(st.integers(1, widest), label="in")
    n_out = draw(st.integers(1, widest), label="out")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    edge_share = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]), label="share of edge values")
    rng = np.random.default_rng(seed)

    def matrix(shape):
        mantissa = rng.standard_normal(shape)
        exponent = rng.integers(-30, 8, shape)  # mostly ordinary values, some tiny
        a = np.clip(mantissa * 2.0**exponent, -MAX_ABS, MAX_ABS).astype(F32)
        edge = rng.random(shape) < edge_share
        a[edge] = rng.choice(np.array(EDGE_VALUES, F32), size=int(edge.sum()))
        return a

    x, delta = matrix((batch, n_in)), matrix((batch, n_out))
    if batch <= 12 and draw(st.booleans(), label="Hypothesis elements"):
        elements = st.one_of(st.floats(-4.0, 4.0, width=32), st.sampled_from([float(v) for v in EDGE_VALUES]))
        x = draw(hnp.arrays(F32, (batch, n_in), elements=elements), label="x")
        delta = draw(hnp.arrays(F32, (batch, n_out), elements=elements), label="delta")
    return x, delta


def _check_against_reference(impl, x: np.ndarray, delta: np.ndarray, what: str) -> None:
    compare_grad_var(what, impl.dense_grad_var, ref.dense_grad_var, {"x": x, "delta": delta})


@given(layer=layers())
def test_dense_grad_var_equals_reference(impl, layer):
    """g_W, s_W, g_b, s_b are bit-identical to the reference's: float32 products and sums,
    each rounded on its own, the samples added in order from +0.0; inputs unmodified."""
    x, delta = layer
    _check_against_reference(impl, x, delta, f"B={x.shape[0]} in={x.shape[1]} out={delta.shape[1]}")


@pytest.mark.parametrize("case", list(EDGE_LAYERS))
def test_dense_grad_var_equals_reference_on_edge_cases(impl, case):
    """The same on layers where one rule shows: no FMA, samples added in order (not
    pairwise, not reversed, not blocked), squares rounded before their product, the
    accumulator starting at +0.0, subnormals kept."""
    x, delta = EDGE_LAYERS[case]()
    _check_against_reference(impl, x, delta, f"case {case}")


@st.composite
def small_layers(draw):
    batch = draw(st.integers(1, 12), label="B")
    n_in = draw(st.integers(1, 6), label="in")
    n_out = draw(st.integers(1, 6), label="out")
    elements = st.one_of(st.floats(-4.0, 4.0, width=32), st.sampled_from([0.0, 1.0, -1.0, 2.0**-10]))
    x = draw(hnp.arrays(F32, (batch, n_in), elements=elements), label="x")
    delta = draw(hnp.arrays(F32, (batch, n_out), elements=elements), label="delta")
    return x, delta


@given(layer=small_layers())
def test_dense_grad_var_matches_per_sample_gradients(impl, layer):
    """g_W = x^T D, s_W = (x*x)^T (D*D), g_b = sum D, s_b = sum D^2 equal the mean and the
    mean square (over B^2) of explicit per-sample gradients, within B+2 float32 roundings of
    the sum of absolute terms; shapes (in, out), (out) and dtype float32."""
    x, delta = layer
    batch = x.shape[0]
    got = impl.dense_grad_var(x.copy(), delta.copy())
    want = ref.per_sample_dense_grad_var(x, delta)
    x64, d64 = x.astype(np.float64), delta.astype(np.float64)
    # Sum of |terms| of each output element: the scale of its rounding error.
    scale = (
        np.abs(x64).T @ np.abs(d64),
        (x64 * x64).T @ (d64 * d64),
        np.abs(d64).sum(axis=0),
        (d64 * d64).sum(axis=0),
    )
    assert isinstance(got, (tuple, list)) and len(got) == 4, "dense_grad_var must return (g_W, s_W, g_b, s_b)"
    for name, g, w, sc in zip(NAMES, got, want, scale):
        assert isinstance(g, np.ndarray) and g.dtype == np.float32, f"{name}: expected float32 ndarray"
        assert g.shape == w.shape, f"{name}: shape {g.shape}, expected {w.shape}"
        bound = (batch + 2) * EPS32 * sc + 2.0**-140
        err = np.abs(g.astype(np.float64) - w.astype(np.float64))
        bad = np.argwhere(err > bound)
        assert bad.size == 0, (
            f"{name}{tuple(bad[0])}: got {g[tuple(bad[0])]!r}, per-sample value {w[tuple(bad[0])]!r} "
            f"(allowed error {bound[tuple(bad[0])]:.3g}); x={x.tolist()} delta={delta.tolist()}"
        )
    assert (got[1] >= 0).all() and (got[3] >= 0).all(), "s_W and s_b must be >= 0"


BAD_LAYERS = {
    "x_float64": lambda x, d: (x.astype(np.float64), d),
    "delta_float64": lambda x, d: (x, d.astype(np.float64)),
    "x_1d": lambda x, d: (x[0], d),
    "batch_mismatch": lambda x, d: (x, d[1:]),
    "empty_batch": lambda x, d: (x[:0], d[:0]),
    "x_list": lambda x, d: (x.tolist(), d),
}


@pytest.mark.parametrize("case", list(BAD_LAYERS))
def test_dense_grad_var_rejects_invalid_inputs(impl, case):
    """Wrong dtype, rank, batch size or type: the reference's exception class and field name."""
    x = np.ones((3, 2), np.float32)
    delta = np.ones((3, 4), np.float32)
    x, delta = BAD_LAYERS[case](x, delta)
    _, want_err = call(ref.dense_grad_var, x, delta)
    _, got_err = call(impl.dense_grad_var, x, delta)
    assert_same_outcome(f"dense_grad_var({case})", got_err, want_err)
