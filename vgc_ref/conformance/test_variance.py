"""Properties of the dense-layer gradient and variance term (semantics section 3).

The matrix products are not part of the bit-exact contract (BLAS libraries sum in
different orders), so the implementation is compared with the exact per-sample
computation within a bound on float32 summation error, and with the reference for
shapes, dtypes and errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import vgc_ref as ref
from vgc_ref.conformance.compare import assert_same_outcome, call

NAMES = ("g_W", "s_W", "g_b", "s_b")
EPS32 = 2.0**-24


@st.composite
def layers(draw):
    batch = draw(st.integers(1, 12), label="B")
    n_in = draw(st.integers(1, 6), label="in")
    n_out = draw(st.integers(1, 6), label="out")
    elements = st.one_of(st.floats(-4.0, 4.0, width=32), st.sampled_from([0.0, 1.0, -1.0, 2.0**-10]))
    x = draw(hnp.arrays(np.float32, (batch, n_in), elements=elements), label="x")
    delta = draw(hnp.arrays(np.float32, (batch, n_out), elements=elements), label="delta")
    return x, delta


@given(layer=layers())
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
