"""Numba kernels of the convolution gradient and variance, bit-identical to :mod:`vgc_ref.variance`.

Every product is a register-tiled kernel of :mod:`vgc_ref.backends.numba_cpu` (section
"Dense layer" there: each output's sums in vector registers through the whole loop over
rows, in the reference's order, ``fastmath=False``, no FMA), on the im2col rows
reshaped to [B*P, K] and [B*P, out]:

* g_W = X^T D over all B*P rows (:func:`~vgc_ref.backends.numba_cpu.tiled_matmul_tn`);
* exact s_W: for each sample b in order, ``G_b = sum_p X[b, p, :]^T D[b, p, :]`` from
  +0.0 over p in increasing order, then ``s_W = s_W + G_b * G_b``
  (:func:`~vgc_ref.backends.numba_cpu.tiled_squared_products` with segments of P rows),
  the twin of ``vgc_ref.variance.conv_var(patches, delta, "exact")``;
* approx s_W = (X o X)^T (D o D), squares rounded first.

The bias terms are ordered sums: :func:`_bias_var_exact` here and the column sums of
:mod:`vgc_ref.backends.numba_portable`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from vgc_ref.backends import numba_portable
from vgc_ref.errors import InputError
from vgc_ref.variance import CONV_VARIANCE_FORMS, _check_conv_pair

_JIT = {"cache": True, "fastmath": False, "nogil": True}


def _tiled():
    """numba_cpu's tiled products (imported here: numba_cpu imports this module)."""
    from vgc_ref.backends import numba_cpu

    return numba_cpu


@njit(**_JIT)
def _bias_var_exact(delta, s_b):
    """s_b[:] += (sum_p D[b, p, :])^2 for b in order; s_b holds +0.0."""
    n_out = s_b.shape[0]
    acc = np.empty(n_out, np.float32)
    for b in range(delta.shape[0]):
        for j in range(n_out):
            acc[j] = np.float32(0.0)
        for p in range(delta.shape[1]):
            for j in range(n_out):
                acc[j] = acc[j] + delta[b, p, j]
        for j in range(n_out):
            s_b[j] = s_b[j] + acc[j] * acc[j]


def conv_var(patches: np.ndarray, delta: np.ndarray, form: str = "exact") -> tuple[np.ndarray, np.ndarray]:
    """s_W, s_b of a convolution; twin of :func:`vgc_ref.variance.conv_var`."""
    _check_conv_pair(patches, delta)
    if form not in CONV_VARIANCE_FORMS:
        raise InputError("form", form, f"must be one of {', '.join(CONV_VARIANCE_FORMS)}")
    b, p, k = patches.shape
    x = patches.reshape(b * p, k)  # float32[B*P, K]
    d = delta.reshape(b * p, -1)  # float32[B*P, out]
    if form == "approx":
        d2 = d * d
        return _tiled().tiled_matmul_tn(x * x, d2), numba_portable.column_sums(d2)
    s_w = _tiled().tiled_squared_products(x, d, p)  # float32[K, out]
    s_b = np.zeros(delta.shape[2], np.float32)
    _bias_var_exact(np.ascontiguousarray(delta), s_b)
    return s_w, s_b


def conv_grad(patches: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """g_W, g_b of a convolution; twin of :func:`vgc_ref.variance.conv_grad`."""
    _check_conv_pair(patches, delta)
    b, p, k = patches.shape
    d = delta.reshape(b * p, -1)
    return _tiled().tiled_matmul_tn(patches.reshape(b * p, k), d), numba_portable.column_sums(d)


def conv_grad_var(
    patches: np.ndarray, delta: np.ndarray, form: str = "exact"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """g_W, s_W, g_b, s_b of a convolution; twin of :func:`vgc_ref.variance.conv_grad_var`."""
    g_w, g_b = conv_grad(patches, delta)
    s_w, s_b = conv_var(patches, delta, form)
    return g_w, s_w, g_b, s_b
