"""Gradient and variance term of a dense layer (semantics section 3).

For a mini-batch of B samples and the mean loss L = (1/B) sum_z l_z, VGC needs per
parameter both the gradient g and the variance term::

    g = (1/B)   sum_z grad(l_z)
    s = (1/B^2) sum_z grad(l_z)^2          (elementwise square, uncentered)

For a dense layer y = x W + b with x: (B, in) and D = dL/dy: (B, out) -- D is the
gradient of the *mean* loss, so row z of D is (1/B) dl_z/dy_z -- the per-sample gradient
of W is grad_W(l_z) = B * outer(x_z, D_z). Hence, exactly in real arithmetic::

    g_W = x^T D                    s_W = (x*x)^T (D*D)
    g_b = sum_z D_z                s_b = sum_z D_z^2

one extra matrix product on squared operands and no per-sample gradients.
:func:`dense_grad_var` computes that (:func:`dense_grad` and :func:`dense_var` are its
two halves); :func:`per_sample_dense_grad_var` is the slow, obvious computation it must
agree with.

The products and sums have one fixed order of float32 operations (docs/algorithm.md
section 2): every product and every addition rounded on its own, the accumulator
starting at +0.0, the samples added in increasing order -- the primitives of
:mod:`vgc_ref.portable`. So the four results are bit-exact, the same on every machine.
:func:`dense_grad_var_blas` is the same computation with BLAS (``x.T @ D``), faster on
large layers but summed in an order of the BLAS library's own: outside the contract.
"""

from __future__ import annotations

import numpy as np

from vgc_ref.errors import InputError
from vgc_ref.portable import column_sums, matmul_tn


def _check_pair(x: np.ndarray, delta: np.ndarray) -> None:
    for name, a in (("x", x), ("delta", delta)):
        if not isinstance(a, np.ndarray):
            raise InputError(name, type(a).__name__, "must be a numpy.ndarray")
        if a.dtype != np.float32:
            raise InputError(name, f"dtype {a.dtype}", "must have dtype float32")
        if a.ndim != 2:
            raise InputError(name, f"shape {a.shape}", "must be 2-D (batch, features)")
    if x.shape[0] != delta.shape[0]:
        raise InputError("delta", f"shape {delta.shape}", f"must have as many rows as x has ({x.shape[0]})")
    if x.shape[0] == 0:
        raise InputError("x", f"shape {x.shape}", "needs at least one sample")


def dense_grad(x: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of W and b for a dense layer: ``g_W = x^T D``, ``g_b = sum_z D_z``.

    In the fixed order of docs/algorithm.md section 2, with every operation rounded to
    float32 on its own::

        g_W[i,j] = ((+0.0 + x[0,i]*D[0,j]) + x[1,i]*D[1,j]) + ... + x[B-1,i]*D[B-1,j]
        g_b[j]   = ((+0.0 + D[0,j]) + D[1,j]) + ... + D[B-1,j]

    Parameters
    ----------
    x : numpy.ndarray
        float32[B, in], the layer's input.
    delta : numpy.ndarray
        float32[B, out], D = dL/dy of the mean loss (it carries the factor 1/B).

    Returns
    -------
    g_W : float32[in, out]
    g_b : float32[out]
    """
    _check_pair(x, delta)
    g_w = matmul_tn(x, delta)  # float32[in, out]
    g_b = column_sums(delta)  # float32[out]
    return g_w, g_b


def dense_var(x: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Variance term of W and b: ``s_W = (x*x)^T (D*D)``, ``s_b = sum_z D_z^2``.

    The one extra matrix product VGC pays for its variance estimate; arguments as in
    :func:`dense_grad`. The squares are rounded to float32 first, then summed in the
    order of :func:`dense_grad`::

        s_W[i,j] = (+0.0 + (x[0,i]*x[0,i]) * (D[0,j]*D[0,j])) + ... (b = 0..B-1)
        s_b[j]   = (+0.0 + D[0,j]*D[0,j]) + ... + D[B-1,j]*D[B-1,j]

    Returns
    -------
    s_W : float32[in, out]
    s_b : float32[out]
    """
    _check_pair(x, delta)
    d2 = delta * delta  # float32[B, out]
    s_w = matmul_tn(x * x, d2)  # float32[in, out]
    s_b = column_sums(d2)  # float32[out]
    return s_w, s_b


def dense_grad_var(x: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gradient and variance term of W and b for a dense layer, from x and D.

    :func:`dense_grad` and :func:`dense_var` together.

    Returns
    -------
    g_W, s_W : float32[in, out]
    g_b, s_b : float32[out]
    """
    g_w, g_b = dense_grad(x, delta)
    s_w, s_b = dense_var(x, delta)
    return g_w, s_w, g_b, s_b


def dense_grad_var_blas(
    x: np.ndarray, delta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`dense_grad_var` with BLAS products: faster on large layers, not bit-exact.

    ``x.T @ D``, ``(x*x).T @ (D*D)`` and NumPy's sums add in an order of their own, which
    differs between BLAS libraries, CPU kernels and thread counts; the results agree with
    :func:`dense_grad_var` to float32 rounding error only. Outside the bit-exact contract
    (docs/algorithm.md section 2). Arguments and results as in :func:`dense_grad_var`.
    """
    _check_pair(x, delta)
    d2 = delta * delta  # float32[B, out]
    g_w = x.T @ delta  # float32[in, out]
    s_w = (x * x).T @ d2  # float32[in, out]
    g_b = delta.sum(axis=0, dtype=np.float32)  # float32[out]
    s_b = d2.sum(axis=0, dtype=np.float32)  # float32[out]
    return g_w, s_w, g_b, s_b


def per_sample_dense_grad_var(x: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, ...]:
    """The same four arrays from explicit per-sample gradients (slow; for checking).

    Builds grad_W(l_z) = B * outer(x_z, D_z) and grad_b(l_z) = B * D_z for every sample,
    then averages them and their squares in float64, and rounds the results to float32.
    Memory is B * in * out * 8 bytes: use it on small layers only.
    """
    _check_pair(x, delta)
    batch = x.shape[0]
    x64 = x.astype(np.float64)
    d64 = delta.astype(np.float64) * batch  # row z: dl_z/dy_z
    grads_w = x64[:, :, None] * d64[:, None, :]  # float64[B, in, out]
    grads_b = d64  # float64[B, out]
    g_w = grads_w.sum(axis=0) / batch
    s_w = (grads_w * grads_w).sum(axis=0) / batch**2
    g_b = grads_b.sum(axis=0) / batch
    s_b = (grads_b * grads_b).sum(axis=0) / batch**2
    return tuple(a.astype(np.float32) for a in (g_w, s_w, g_b, s_b))
