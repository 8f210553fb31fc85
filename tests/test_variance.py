"""Dense-layer variance (one extra product) against explicit per-sample gradients."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vgc_ref import InputError, dense_grad_var, dense_grad_var_blas, per_sample_dense_grad_var


@given(
    st.integers(1, 17).map(int),  # label: B
    st.integers(1, 9),  # in
    st.integers(1, 9),  # out
    st.integers(0, 2**32 - 1),  # seed
)
def test_cheap_variance_equals_per_sample_computation(batch, n_in, n_out, seed):
    """g_W, s_W, g_b, s_b from x^T D and (x*x)^T (D*D) equal the per-sample means,
    to float32 relative precision (B = 1 included)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    delta = (rng.standard_normal((batch, n_out)) / batch).astype(np.float32)
    fast = dense_grad_var(x, delta)
    slow = per_sample_dense_grad_var(x, delta)
    names = ["g_W", "s_W", "g_b", "s_b"]
    for name, a, b in zip(names, fast, slow):
        assert a.dtype == np.float32 and a.shape == b.shape, name
        # Sums of B products: the error is at most ~B ulps of the sum of |terms|.
        scale = np.abs(b) + 1e-30
        if name.startswith("g"):
            scale = np.abs(np.abs(x).T @ np.abs(delta)) if name == "g_W" else np.abs(delta).sum(0)
        np.testing.assert_array_less(
            np.abs(a - b), 4 * batch * np.finfo(np.float32).eps * scale + 1e-37, name
        )


@given(
    st.one_of(st.integers(1, 17), st.integers(100, 300)),  # B
    st.integers(0, 9),  # in
    st.integers(0, 9),  # out
    st.integers(0, 2**32 - 1),  # seed
)
def test_blas_form_agrees_with_the_fixed_order_to_rounding(batch, n_in, n_out, seed):
    """dense_grad_var_blas (BLAS order, outside the contract) gives the fixed-order results
    within B float32 roundings of the sum of |terms|, with the same shapes and dtype."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    delta = (rng.standard_normal((batch, n_out)) / batch).astype(np.float32)
    x64, d64 = x.astype(np.float64), delta.astype(np.float64)
    scales = (
        np.abs(x64).T @ np.abs(d64),
        (x64 * x64).T @ (d64 * d64),
        np.abs(d64).sum(0),
        (d64 * d64).sum(0),
    )
    for a, b, scale in zip(dense_grad_var_blas(x, delta), dense_grad_var(x, delta), scales):
        assert a.dtype == np.float32 and a.shape == b.shape
        bound = 2 * batch * np.finfo(np.float32).eps * scale + 1e-37
        np.testing.assert_array_less(np.abs(a.astype(np.float64) - b), bound)


def test_variance_is_nonnegative_and_matches_hand_computation():
    """B = 2 by hand: per-sample grads of W are B * x_z D_z."""
    x = np.array([[1.0], [2.0]], np.float32)
    delta = np.array([[0.5], [-0.25]], np.float32)  # D = (1/B) dl/dy
    g_w, s_w, g_b, s_b = dense_grad_var(x, delta)
    # per-sample grads of W: 2*1*0.5 = 1, 2*2*(-0.25) = -1 -> mean 0, mean square / B = 1/2
    assert g_w.tolist() == [[0.0]] and s_w.tolist() == [[0.5]]
    # per-sample grads of b: 1, -0.5 -> mean 0.25, (1 + 0.25) / 4 = 0.3125
    assert g_b.tolist() == [0.25] and s_b.tolist() == [0.3125]


@pytest.mark.parametrize(
    ("x", "delta", "name"),
    [
        (np.zeros((2, 3), np.float64), np.zeros((2, 4), np.float32), "x"),
        (np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32), "delta"),
        (np.zeros(3, np.float32), np.zeros((2, 4), np.float32), "x"),
        (np.zeros((0, 3), np.float32), np.zeros((0, 4), np.float32), "x"),
    ],
)
def test_bad_shapes_and_dtypes_are_rejected(x, delta, name):
    for fn in (dense_grad_var, dense_grad_var_blas, per_sample_dense_grad_var):
        with pytest.raises(InputError) as info:
            fn(x, delta)
        assert info.value.name == name
