"""Convolution gradient and variance: exact per-sample form, approximation, their bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vgc_ref import InputError
from vgc_ref.backends import numba_conv
from vgc_ref.variance import (
    col2im1d,
    conv1d_grad_var,
    conv2d_grad_var,
    conv_grad_var,
    conv_var,
    im2col1d,
    im2col2d,
    per_sample_conv_grad_var,
)

EPS32 = np.finfo(np.float32).eps
geometry = st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(0, 2))  # kernel, stride, padding


def _inputs(rng, batch, length, c_in, c_out, kernel, stride, padding):
    x = rng.standard_normal((batch, length, c_in)).astype(np.float32)
    patches = im2col1d(x, kernel, stride, padding)
    delta = (rng.standard_normal((batch, patches.shape[1], c_out)) / batch).astype(np.float32)
    return x, patches, delta


def _per_sample64(patches, delta):
    """float64 per-sample quantities a[b, p, i, j] = B * X[b,p,i] * D[b,p,j] (the gradient of
    sample b at position p), for the bounds."""
    batch = patches.shape[0]
    return batch * patches.astype(np.float64)[:, :, :, None] * delta.astype(np.float64)[:, :, None, :]


def test_im2col1d_conv_equals_the_direct_sum():
    """mm(patches, W) is the convolution y[b,p,o] = sum_{k,c} xpad[b, p*s+k, c] W[k*C+c, o]."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 11, 3))
    w = rng.standard_normal((4 * 3, 5))
    kernel, stride, padding = 4, 2, 1
    y = im2col1d(x, kernel, stride, padding) @ w
    xpad = np.pad(x, ((0, 0), (padding, padding), (0, 0)))
    for p in range(y.shape[1]):
        direct = sum(xpad[:, p * stride + k, c, None] * w[k * 3 + c] for k in range(kernel) for c in range(3))
        np.testing.assert_allclose(y[:, p], direct, rtol=1e-12)


@given(st.integers(1, 3), st.integers(1, 12), st.integers(1, 3), geometry, st.integers(0, 2**32 - 1))
def test_col2im1d_is_the_adjoint_of_im2col1d(batch, length, channels, geom, seed):
    """<im2col(x), G> = <x, col2im(G)> for every x and G (float64): col2im is the backward of im2col."""
    kernel, stride, padding = geom
    if length + 2 * padding < kernel:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, length, channels))
    cols = im2col1d(x, kernel, stride, padding)
    g = rng.standard_normal(cols.shape)
    back = col2im1d(g, length, kernel, stride, padding)
    assert back.shape == x.shape
    np.testing.assert_allclose((cols * g).sum(), (x * back).sum(), rtol=1e-10, atol=1e-10)


@given(
    st.integers(1, 6),
    st.integers(1, 14),
    st.integers(1, 3),
    st.integers(1, 4),
    geometry,
    st.sampled_from(["exact", "approx"]),
    st.integers(0, 2**32 - 1),
)
def test_conv_grad_var_equals_per_sample_computation(batch, length, c_in, c_out, geom, form, seed):
    """g and s of both forms equal the explicit per-sample (float64) computation to float32 precision."""
    kernel, stride, padding = geom
    if length + 2 * padding < kernel:
        return
    rng = np.random.default_rng(seed)
    _, patches, delta = _inputs(rng, batch, length, c_in, c_out, kernel, stride, padding)
    fast = conv_grad_var(patches, delta, form)
    slow = per_sample_conv_grad_var(patches, delta, form)
    a = _per_sample64(patches, delta)
    n_pos = patches.shape[1]
    # error bounds: sums of |terms| times a few ulps per addition
    abs_g = np.abs(a).sum(axis=(0, 1)) / batch
    if form == "exact":
        abs_s = (np.abs(a).sum(axis=1) ** 2).sum(axis=0) / batch**2
    else:
        abs_s = (a * a).sum(axis=(0, 1)) / batch**2
    for name, got, want, scale in zip(("g_W", "s_W"), fast[:2], slow[:2], (abs_g, abs_s)):
        assert got.dtype == np.float32 and got.shape == want.shape, name
        bound = 4 * (batch * n_pos + 2) * EPS32 * scale + 1e-37
        assert np.all(np.abs(got.astype(np.float64) - want) <= bound), name
    np.testing.assert_allclose(fast[2], slow[2], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast[3], slow[3], rtol=1e-4, atol=1e-9)


@settings(deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 12),
    st.integers(1, 3),
    st.integers(1, 9),
    geometry,
    st.sampled_from(["exact", "approx"]),
    st.integers(0, 2**32 - 1),
)
def test_numba_conv_var_is_bit_identical_to_the_reference(batch, length, c_in, c_out, geom, form, seed):
    kernel, stride, padding = geom
    if length + 2 * padding < kernel:
        return
    rng = np.random.default_rng(seed)
    _, patches, delta = _inputs(rng, batch, length, c_in, c_out, kernel, stride, padding)
    for ref, fast in zip(conv_var(patches, delta, form), numba_conv.conv_var(patches, delta, form)):
        assert ref.tobytes() == fast.tobytes()
    for ref, fast in zip(conv_grad_var(patches, delta)[0::2], numba_conv.conv_grad(patches, delta)):
        assert ref.tobytes() == fast.tobytes()


@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_bounds_between_exact_and_approx(batch, n_pos, n_in, n_out, seed):
    """In real arithmetic, per element: 0 <= exact <= P * approx (Cauchy-Schwarz over the P
    positions). Checked in float64 on the per-sample definitions."""
    rng = np.random.default_rng(seed)
    patches = rng.standard_normal((batch, n_pos, n_in)).astype(np.float32)
    delta = rng.standard_normal((batch, n_pos, n_out)).astype(np.float32)
    a = _per_sample64(patches, delta)
    exact = (a.sum(axis=1) ** 2).sum(axis=0)
    approx = (a * a).sum(axis=(0, 1))
    assert np.all(exact >= 0)
    assert np.all(exact <= n_pos * approx * (1 + 1e-12))


@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_equality_cases(batch, n_pos, n_in, n_out, seed):
    """exact = approx when P = 1; exact = P * approx when every position of a sample contributes
    the same term; approx <= exact when a sample's terms share a sign (x >= 0 and D >= 0)."""
    rng = np.random.default_rng(seed)
    x = np.abs(rng.standard_normal((batch, n_pos, n_in)))
    d = np.abs(rng.standard_normal((batch, n_pos, n_out)))

    def forms(xx, dd):
        a = xx[:, :, :, None] * dd[:, :, None, :]
        return (a.sum(axis=1) ** 2).sum(axis=0), (a * a).sum(axis=(0, 1))

    exact, approx = forms(x[:, :1], d[:, :1])
    np.testing.assert_allclose(exact, approx, rtol=1e-12)
    same = np.repeat(x[:, :1], n_pos, axis=1), np.repeat(d[:, :1], n_pos, axis=1)
    exact, approx = forms(*same)
    np.testing.assert_allclose(exact, n_pos * approx, rtol=1e-12)
    exact, approx = forms(x, d)
    assert np.all(approx <= exact * (1 + 1e-12))


def test_exact_can_be_zero_while_approx_is_not():
    """No positive lower bound: opposite terms of one sample cancel in the exact form only."""
    patches = np.array([[[1.0], [1.0]]], np.float32)  # B = 1, P = 2, K = 1
    delta = np.array([[[0.5], [-0.5]]], np.float32)
    s_exact, _ = conv_var(patches, delta, "exact")
    s_approx, _ = conv_var(patches, delta, "approx")
    assert s_exact[0, 0] == 0.0 and s_approx[0, 0] == 0.5


def test_exact_form_by_hand():
    """B = 2, P = 2, one input and one output: s = sum_b (sum_p x d)^2 in the documented order."""
    patches = np.array([[[1.0], [2.0]], [[3.0], [-1.0]]], np.float32)
    delta = np.array([[[0.5], [0.25]], [[-0.5], [0.5]]], np.float32)
    s_w, s_b = conv_var(patches, delta, "exact")
    assert s_w[0, 0] == np.float32((1 * 0.5 + 2 * 0.25) ** 2 + (3 * -0.5 + -1 * 0.5) ** 2)  # 1 + 4
    assert s_b[0] == np.float32(0.75**2 + 0.0**2)
    s_w, s_b = conv_var(patches, delta, "approx")
    assert s_w[0, 0] == np.float32(0.25 + 4 * 0.0625 + 9 * 0.25 + 0.25)
    assert s_b[0] == np.float32(0.25 + 0.0625 + 0.25 + 0.25)


def test_conv1d_and_conv2d_entry_points():
    """A 2-D convolution of a one-pixel-wide image with a (k, 1) kernel is the 1-D one, bit for bit."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 9, 2)).astype(np.float32)
    cols = im2col1d(x, 3, 2, 0)
    delta = rng.standard_normal((3, cols.shape[1], 4)).astype(np.float32)
    np.testing.assert_array_equal(im2col2d(x[:, :, None, :], (3, 1), 2, 0), cols)
    for form in ("exact", "approx"):
        one = conv1d_grad_var(x, delta, 3, 2, 0, form)
        two = conv2d_grad_var(x[:, :, None, :], delta, (3, 1), 2, 0, form)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(one, two))


def test_conv2d_variance_against_per_sample():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    cols = im2col2d(x, (3, 3), 1, 1)
    delta = (rng.standard_normal((2, cols.shape[1], 2)) / 2).astype(np.float32)
    for form in ("exact", "approx"):
        got = conv2d_grad_var(x, delta, (3, 3), 1, 1, form)
        want = per_sample_conv_grad_var(cols, delta, form)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: conv_var(np.zeros((2, 3, 4)), np.zeros((2, 3, 1), np.float32)),
            "patches: must have dtype float32",
        ),
        (
            lambda: conv_var(np.zeros((2, 3, 4), np.float32), np.zeros((2, 4, 1), np.float32)),
            "delta: must match patches' batch and positions",
        ),
        (
            lambda: conv_var(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32)),
            "patches: must be 3-D",
        ),
        (
            lambda: conv_var(np.zeros((2, 3, 4), np.float32), np.zeros((2, 3, 1), np.float32), "cheap"),
            "form: must be one of exact, approx",
        ),
        (
            lambda: im2col1d(np.zeros((1, 3, 1), np.float32), 6, 1, 1),
            "kernel: is longer than the padded input",
        ),
        (lambda: im2col1d(np.zeros((1, 3, 1), np.float32), 2, 0, 0), "stride: must be an integer >= 1"),
        (
            lambda: numba_conv.conv_var(np.zeros((0, 3, 4), np.float32), np.zeros((0, 3, 1), np.float32)),
            "patches: needs at least one sample",
        ),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(InputError, match=message):
        call()


# --------------------------------------------------------------------------------------
# The float32 results: the bound inside the range, IEEE values at its edges
# (docs/algorithm.md section 2.1, "Range of the two forms")
# --------------------------------------------------------------------------------------


def _wide(draw, shape, exponent):
    """float32 values m * 2^e with |m| in [1, 2), e in [-exponent, exponent], and some exact zeros."""
    n = int(np.prod(shape))
    mant = draw(st.lists(st.floats(1.0, 2.0, exclude_max=True, width=32), min_size=n, max_size=n))
    exps = draw(st.lists(st.integers(-exponent, exponent), min_size=n, max_size=n))
    signs = draw(st.lists(st.sampled_from([-1.0, 0.0, 1.0, 1.0, 1.0]), min_size=n, max_size=n))
    vals = [s * m * 2.0**e for s, m, e in zip(signs, mant, exps)]
    return np.array(vals, np.float32).reshape(shape)


@st.composite
def in_range_layers(draw):
    """Layers whose every intermediate of both forms is zero or a normal float32: nonzero |x|,
    |D| in [2^-28, 2^29), so every product x^2 D^2 lies in [2^-112, 2^116) and B*P <= 24 terms
    sum below 2^121."""
    b, p, k, o = (
        draw(st.integers(1, hi), label=name) for hi, name in ((4, "B"), (6, "P"), (3, "K"), (3, "out"))
    )
    return _wide(draw, (b, p, k), 28), _wide(draw, (b, p, o), 28)


@settings(max_examples=200)
@given(in_range_layers())
def test_float32_bound_holds_up_to_rounding_inside_the_range(layer):
    """Inside the range, the float32 results keep 0 <= exact <= P * approx within the rounding
    bound (B*P + 2P + B + 8) * 2^-23, and approx = 0 only where exact = 0."""
    patches, delta = layer
    b, p = patches.shape[:2]
    s_exact = conv_var(patches, delta, "exact")
    s_approx = conv_var(patches, delta, "approx")
    slack = 1 + (b * p + 2 * p + b + 8) * 2.0**-23
    for exact, approx in zip(s_exact, s_approx):
        assert np.all(np.isfinite(exact)) and np.all(np.isfinite(approx))
        assert np.all(exact >= 0) and np.all(approx >= 0)
        e64, a64 = exact.astype(np.float64), approx.astype(np.float64)
        assert np.all(e64 <= p * a64 * slack), (e64, a64)
        assert np.all(e64[a64 == 0] == 0)


#: One-element layers (B = P = K = out = 1) at the edges of the approximate form's range:
#: x, D, and s_W of the exact and approximate forms (the bias terms do not involve x).
EDGES = {
    # x^2 = 1e-50 underflows to +0.0; exact: (x D)^2 = 1e-40, a subnormal.
    "x_squared_underflows": (1e-25, 1e5, "subnormal", 0.0),
    # x^2 = 1e40 overflows; D^2 = 1e-40 is a nonzero subnormal: approx = +inf; exact = 1.
    "x_squared_overflows": (1e20, 1e-20, 1.0, np.inf),
    # x^2 = inf and D^2 = +0.0 (1e-50 underflows): inf * 0 is NaN; exact: (1e-5)^2.
    "inf_times_zero": (1e20, 1e-25, 1e-10, np.nan),
}


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
@pytest.mark.parametrize("case", list(EDGES))
def test_approx_form_at_its_edges_is_ieee_and_the_step_refuses_it(case):
    """Outside the range the approximate form is defined, not refused: its documented order in
    IEEE float32 (round to nearest, gradual underflow) gives +0.0, +inf or NaN where the exact
    form is finite; the reference and the Numba kernel give the same bits; and the VGC step
    refuses an infinite or NaN s with NonFiniteError("s"), so it never reaches a residual."""
    from vgc_ref import NonFiniteError, SegmentState, VGCParams, vgc_step

    x, d, exact_want, approx_want = EDGES[case]
    patches = np.full((1, 1, 1), x, np.float32)
    delta = np.full((1, 1, 1), d, np.float32)
    exact = conv_var(patches, delta, "exact")[0][0, 0]
    approx = conv_var(patches, delta, "approx")[0][0, 0]
    if exact_want == "subnormal":
        assert 0 < exact < np.finfo(np.float32).tiny
    else:
        g = np.float32(x) * np.float32(d)  # the exact form's order: the product, then its square
        assert exact == g * g and np.isclose(exact, exact_want, rtol=1e-6)
    if np.isnan(approx_want):
        assert np.isnan(approx)
    else:
        assert approx == approx_want and not np.signbit(approx)
    for form in ("exact", "approx"):
        ref = conv_var(patches, delta, form)
        fast = numba_conv.conv_var(patches, delta, form)
        assert [a.tobytes() for a in ref] == [a.tobytes() for a in fast], form
    if np.isfinite(approx):
        return
    state = SegmentState(0, np.zeros(1, np.float32), np.zeros(1, np.float32))
    s = np.array([approx], np.float32)
    with pytest.raises(NonFiniteError) as err:
        vgc_step(state, np.ones(1, np.float32), s, VGCParams(alpha=2.0))
    assert (err.value.name, err.value.index) == ("s", 0)
    assert state.r.tolist() == [0.0] and state.v.tolist() == [0.0]
