"""Numba kernel of the exact convolution variance, bit-identical to :mod:`vgc_ref.variance`.

:func:`conv_var_exact` is the twin of ``vgc_ref.variance.conv_var(patches, delta,
"exact")``: for each output row i (parallel over i; a thread owns whole rows), for each
sample b in order, the per-sample product ``G_b[i, :] = sum_p X[b, p, i] * D[b, p, :]``
accumulates from +0.0 over p in increasing order, then ``s_W[i, :] += G_b[i, :]^2``; the
same roundings in the same order as the reference, ``fastmath=False`` (no FMA). The bias
term and the approximate form are ordered products and sums of
:mod:`vgc_ref.backends.numba_portable` on reshaped arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from vgc_ref.backends import numba_portable
from vgc_ref.errors import InputError
from vgc_ref.variance import CONV_VARIANCE_FORMS, _check_conv_pair

_JIT = {"cache": True, "fastmath": False, "nogil": True}


@njit(parallel=True, **_JIT)
def _conv_var_exact(x, delta, s_w):
    """s_W[i, :] += (sum_p x[b, p, i] * D[b, p, :])^2 for b in order; s_w holds +0.0."""
    n_out = s_w.shape[1]
    for i in prange(s_w.shape[0]):
        acc = np.empty(n_out, np.float32)
        row = s_w[i]
        for b in range(x.shape[0]):
            for j in range(n_out):
                acc[j] = np.float32(0.0)
            for p in range(x.shape[1]):
                xi = x[b, p, i]
                dp = delta[b, p]
                for j in range(n_out):
                    acc[j] = acc[j] + xi * dp[j]
            for j in range(n_out):
                row[j] = row[j] + acc[j] * acc[j]


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
    if form == "approx":
        d2 = (delta * delta).reshape(b * p, -1)
        x2 = (patches * patches).reshape(b * p, k)
        return numba_portable.matmul_tn(x2, d2), numba_portable.column_sums(d2)
    patches = np.ascontiguousarray(patches)
    delta = np.ascontiguousarray(delta)
    s_w = np.zeros((k, delta.shape[2]), np.float32)
    s_b = np.zeros(delta.shape[2], np.float32)
    _conv_var_exact(patches, delta, s_w)
    _bias_var_exact(delta, s_b)
    return s_w, s_b


def conv_grad(patches: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """g_W, g_b of a convolution; twin of :func:`vgc_ref.variance.conv_grad`."""
    _check_conv_pair(patches, delta)
    b, p, k = patches.shape
    d = delta.reshape(b * p, -1)
    return numba_portable.matmul_tn(patches.reshape(b * p, k), d), numba_portable.column_sums(d)


def conv_grad_var(
    patches: np.ndarray, delta: np.ndarray, form: str = "exact"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """g_W, s_W, g_b, s_b of a convolution; twin of :func:`vgc_ref.variance.conv_grad_var`."""
    g_w, g_b = conv_grad(patches, delta)
    s_w, s_b = conv_var(patches, delta, form)
    return g_w, s_w, g_b, s_b
