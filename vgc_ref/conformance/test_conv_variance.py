"""Properties of the convolution gradient and variance term (docs/algorithm.md section 2.1).

``conv_grad_var(patches, delta, form)`` takes a convolution's im2col patches X:
float32[B, P, K] and D = dL/dy: float32[B, P, out] (D carries 1/B) and returns g_W, s_W
(float32[K, out]) and g_b, s_b (float32[out]). ``form`` "exact" is the per-sample variance
s_W = sum_b (X_b^T D_b)^2, "approx" treats every output position as a sample,
(X o X)^T (D o D). As for the dense layer, the results are compared with the explicit
per-sample computation (float64) within a bound on float32 summation error, and with the
reference for shapes, dtypes and errors.
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
def convs(draw):
    batch = draw(st.integers(1, 6), label="B")
    n_pos = draw(st.integers(1, 6), label="P")
    n_in = draw(st.integers(1, 5), label="K")
    n_out = draw(st.integers(1, 4), label="out")
    elements = st.one_of(st.floats(-4.0, 4.0, width=32), st.sampled_from([0.0, 1.0, -1.0, 2.0**-10]))
    x = draw(hnp.arrays(np.float32, (batch, n_pos, n_in), elements=elements), label="patches")
    delta = draw(hnp.arrays(np.float32, (batch, n_pos, n_out), elements=elements), label="delta")
    form = draw(st.sampled_from(["exact", "approx"]), label="form")
    return x, delta, form


@given(conv=convs())
def test_conv_grad_var_matches_per_sample_gradients(impl, conv):
    """g_W, g_b are the mean and s_W, s_b the mean square (over B^2) of explicit per-sample
    gradients (exact) or per-position ones (approx), within (B*P + 2) float32 roundings of the
    sum of absolute terms; float32, shapes (K, out) and (out,); s >= 0."""
    x, delta, form = conv
    batch, n_pos = x.shape[:2]
    got = impl.conv_grad_var(x.copy(), delta.copy(), form)
    want = ref.per_sample_conv_grad_var(x, delta, form)
    a = batch * x.astype(np.float64)[:, :, :, None] * delta.astype(np.float64)[:, :, None, :]
    e = batch * delta.astype(np.float64)
    if form == "exact":
        s_scale = (np.abs(a).sum(axis=1) ** 2).sum(axis=0), (np.abs(e).sum(axis=1) ** 2).sum(axis=0)
    else:
        s_scale = (a * a).sum(axis=(0, 1)), (e * e).sum(axis=(0, 1))
    scale = (
        np.abs(a).sum(axis=(0, 1)) / batch,
        s_scale[0] / batch**2,
        np.abs(e).sum(axis=(0, 1)) / batch,
        s_scale[1] / batch**2,
    )
    assert isinstance(got, (tuple, list)) and len(got) == 4, "conv_grad_var must return (g_W, s_W, g_b, s_b)"
    for name, g, w, sc in zip(NAMES, got, want, scale):
        assert isinstance(g, np.ndarray) and g.dtype == np.float32, f"{name}: expected float32 ndarray"
        assert g.shape == w.shape, f"{name}: shape {g.shape}, expected {w.shape}"
        bound = 2 * (batch * n_pos + 2) * EPS32 * sc + 2.0**-140
        err = np.abs(g.astype(np.float64) - w.astype(np.float64))
        bad = np.argwhere(err > bound)
        assert bad.size == 0, (
            f"{name}{tuple(bad[0])} ({form}): got {g[tuple(bad[0])]!r}, per-sample value "
            f"{w[tuple(bad[0])]!r} (allowed error {bound[tuple(bad[0])]:.3g})"
        )
    assert (got[1] >= 0).all() and (got[3] >= 0).all(), "s_W and s_b must be >= 0"


BAD_CONVS = {
    "patches_float64": lambda x, d, f: (x.astype(np.float64), d, f),
    "delta_2d": lambda x, d, f: (x, d[0], f),
    "positions_mismatch": lambda x, d, f: (x, d[:, 1:], f),
    "empty_batch": lambda x, d, f: (x[:0], d[:0], f),
    "unknown_form": lambda x, d, f: (x, d, "cheap"),
}


@pytest.mark.parametrize("case", list(BAD_CONVS))
def test_conv_grad_var_rejects_invalid_inputs(impl, case):
    """Wrong dtype, rank, positions, an empty batch or an unknown form: the reference's
    exception class and field name."""
    x = np.ones((3, 2, 4), np.float32)
    delta = np.ones((3, 2, 5), np.float32)
    args = BAD_CONVS[case](x, delta, "exact")
    _, want_err = call(ref.conv_grad_var, *args)
    _, got_err = call(impl.conv_grad_var, *args)
    assert_same_outcome(f"conv_grad_var({case})", got_err, want_err)
