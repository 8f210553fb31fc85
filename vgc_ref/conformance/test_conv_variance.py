"""Properties of the convolution gradient and variance term (docs/algorithm.md section 2.1).

``conv_grad_var(patches, delta, form)`` takes a convolution's im2col patches X:
float32[B, P, K] and D = dL/dy: float32[B, P, out] (D carries 1/B) and returns g_W, s_W
(float32[K, out]) and g_b, s_b (float32[out]). ``form`` "exact" is the per-sample variance
s_W = sum_b (X_b^T D_b)^2, "approx" treats every output position as a sample,
(X o X)^T (D o D). Both forms are bit-exact (the fixed order of section 2.1, decision 11):
the implementation is compared with the reference bit for bit on random layers (batches
and position counts past any blocking size, edge values, patches of real 1-D and 2-D
convolutions) and on hand-picked layers where one rule of the order decides the result.
As for the dense layer, the results are also compared with the explicit per-sample
computation (float64) within a bound on float32 summation error, a check of the formula
that does not lean on the reference, and with the reference's errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import vgc_ref as ref
from vgc_ref.conformance.compare import assert_same_outcome, call, compare_grad_var
from vgc_ref.conformance.test_variance import EDGE_VALUES, MAX_ABS
from vgc_ref.conformance.variance_cases import BAD_CONVS, CONV_EDGE_LAYERS
from vgc_ref.variance import im2col1d, im2col2d

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


@st.composite
def conv_layers(draw):
    """Patches X: float32[B, P, K] and D: float32[B, P, out] whose bits show the order:
    short layers of Hypothesis elements and edge values, long ones (B up to 300 or P up to
    80, past any blocking size) of many magnitudes, and the patches of real 1-D and 2-D
    convolutions (overlapping windows, zero padding), in both forms."""
    form = draw(st.sampled_from(["exact", "approx"]), label="form")
    kind = draw(st.sampled_from(["short", "long_batch", "long_positions", "conv1d", "conv2d"]), label="kind")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)

    def values(shape):
        mantissa = rng.random(shape) * 2.0 - 1.0
        a = np.clip(mantissa * np.ldexp(1.0, rng.integers(-30, 8, shape)), -MAX_ABS, MAX_ABS).astype(
            np.float32
        )
        edge = rng.random(shape) < 0.2
        a[edge] = rng.choice(np.array(EDGE_VALUES, np.float32), size=int(edge.sum()))
        return a

    if kind == "short":
        shape = tuple(draw(st.integers(1, hi), label=n) for hi, n in ((5, "B"), (5, "P"), (5, "K")))
        n_out = draw(st.integers(1, 4), label="out")
        elements = st.one_of(st.floats(-4.0, 4.0, width=32), st.sampled_from([float(v) for v in EDGE_VALUES]))
        x = draw(hnp.arrays(np.float32, shape, elements=elements), label="patches")
        delta = draw(hnp.arrays(np.float32, (*shape[:2], n_out), elements=elements), label="delta")
        return x, delta, form
    if kind == "long_batch":
        batch, n_pos = draw(st.integers(100, 300), label="B"), draw(st.integers(1, 3), label="P")
        return values((batch, n_pos, 2)), values((batch, n_pos, 2)), form
    if kind == "long_positions":
        batch, n_pos = draw(st.integers(1, 3), label="B"), draw(st.integers(60, 80), label="P")
        return values((batch, n_pos, 2)), values((batch, n_pos, 2)), form
    batch = draw(st.integers(1, 4), label="B")
    channels = draw(st.integers(1, 3), label="C")
    stride, padding = draw(st.integers(1, 2), label="stride"), draw(st.integers(0, 1), label="padding")
    if kind == "conv1d":
        kernel = draw(st.integers(1, 4), label="kernel")
        patches = im2col1d(values((batch, 9, channels)), kernel, stride, padding)
    else:
        kernel = (draw(st.integers(1, 3), label="kh"), draw(st.integers(1, 3), label="kw"))
        patches = im2col2d(values((batch, 5, 6, channels)), kernel, stride, padding)
    n_out = draw(st.integers(1, 3), label="out")
    return patches, values((batch, patches.shape[1], n_out)), form


def _check_conv_against_reference(impl, x, delta, form, what):
    inputs = {"patches": x, "delta": delta}
    compare_grad_var(f"{what} ({form})", impl.conv_grad_var, ref.conv_grad_var, inputs, form)


@given(conv=conv_layers())
def test_conv_grad_var_equals_reference(impl, conv):
    """g_W, s_W, g_b, s_b of both forms are bit-identical to the reference's: float32
    products and sums each rounded on its own from +0.0, rows b-major then p, a sample's
    positions and the samples added in increasing order; inputs unmodified."""
    x, delta, form = conv
    _check_conv_against_reference(impl, x, delta, form, f"B={x.shape[0]} P={x.shape[1]} K={x.shape[2]}")


@pytest.mark.parametrize("form", ["exact", "approx"])
@pytest.mark.parametrize("case", list(CONV_EDGE_LAYERS))
def test_conv_grad_var_equals_reference_on_edge_cases(impl, case, form):
    """The same on layers where one rule of section 2.1's order shows: no FMA, positions and
    samples added in order, rows b-major, long batches, squares rounded first, signed zeros,
    subnormals (vgc_ref/conformance/variance_cases.py)."""
    x, delta = CONV_EDGE_LAYERS[case]()
    _check_conv_against_reference(impl, x, delta, form, f"case {case}")


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
