"""Numba kernels of the portable primitives, bit-identical to :mod:`vgc_ref.portable`.

Each public function has the name, the arguments and the results of its twin in
:mod:`vgc_ref.portable` and gives the same bits (tests/test_portable.py checks it on
Hypothesis inputs, and that the results do not depend on the number of threads).

How the order is kept while the loops run fast::

    Python   validate (the reference's own checks: Numba does not check bounds)
    kernel   parallel over output rows i (prange); for one row, the shared index k runs
             in increasing order in the outer loop and the output column j in the inner
             one:  out[i, j] = out[i, j] + a[i, k] * b[k, j]  for all j, then k + 1.
             The inner loop is vectorized across j (independent elements), so every
             element sees the reference's additions in the reference's order, with no
             reassociation; a thread owns whole rows, so the thread count changes
             nothing.

All kernels are compiled with ``fastmath=False``: LLVM may not fuse a multiply and an add
into an FMA, reassociate or flush subnormals (tests/test_portable.py searches their
assembly for FMA instructions). ``exp32`` and ``log32`` are the reference's float64
algorithms, operation for operation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from vgc_ref import portable
from vgc_ref.portable import check_array, check_product
from vgc_ref.variance import _check_pair

_JIT = {"cache": True, "fastmath": False, "nogil": True}

#: Rows per task of a parallel kernel over a 1-D output (column sums, exp32, log32).
CHUNK = 1 << 14

EXP_HI = portable.EXP_HI
EXP_LO = portable.EXP_LO
INV_LN2 = portable.INV_LN2
LN2_HI = portable.LN2_HI
LN2_LO = portable.LN2_LO
EXP_C = np.array(portable.EXP_C, np.float64)
SQRT_HALF = portable.SQRT_HALF
LN2 = portable.LN2
LOG_Q = np.array(portable.LOG_Q, np.float64)
NAN32_BITS = 0x7FC00000  # log32 of x < 0: the float32 quiet NaN


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@njit(parallel=True, **_JIT)
def _matmul(a, b, out):
    """out[i, :] += a[i, k] * b[k, :] for k = 0..K-1 in order; out holds +0.0."""
    for i in prange(out.shape[0]):
        row = out[i]
        for k in range(a.shape[1]):
            aik = a[i, k]
            bk = b[k]
            for j in range(row.shape[0]):
                row[j] = row[j] + aik * bk[j]


@njit(parallel=True, **_JIT)
def _matmul_tn(a, b, out):
    """out[i, :] += a[k, i] * b[k, :] for k = 0..K-1 in order; out holds +0.0."""
    for i in prange(out.shape[0]):
        row = out[i]
        for k in range(a.shape[0]):
            aki = a[k, i]
            bk = b[k]
            for j in range(row.shape[0]):
                row[j] = row[j] + aki * bk[j]


@njit(parallel=True, **_JIT)
def _grad_var(x, delta, d2, g_w, s_w):
    """g_W[i, :] += x[k, i] * D[k, :] and s_W[i, :] += (x[k, i]^2) * D2[k, :], k in order."""
    for i in prange(g_w.shape[0]):
        g_row = g_w[i]
        s_row = s_w[i]
        for k in range(x.shape[0]):
            xki = x[k, i]
            xki2 = xki * xki
            dk = delta[k]
            d2k = d2[k]
            for j in range(g_row.shape[0]):
                g_row[j] = g_row[j] + xki * dk[j]
                s_row[j] = s_row[j] + xki2 * d2k[j]


@njit(parallel=True, **_JIT)
def _column_sums(a, out):
    """out[j] += a[i, j] for i = 0..m-1 in order; columns split into CHUNK-long tasks."""
    n = out.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(lo + CHUNK, n)
        for i in range(a.shape[0]):
            ai = a[i]
            for j in range(lo, hi):
                out[j] = out[j] + ai[j]


@njit(inline="always", **_JIT)
def _exp32(x):
    """exp32 of one float32 (vgc_ref.portable.exp32)."""
    X = np.float64(x)
    if X > EXP_HI:
        return np.float32(np.inf)
    if X < EXP_LO:
        return np.float32(0.0)
    if X != X:
        return x
    n = np.rint(X * INV_LN2)
    r = (X - n * LN2_HI) - n * LN2_LO
    p = EXP_C[13]
    for k in range(12, -1, -1):
        p = p * r + EXP_C[k]
    return np.float32(math.ldexp(p, int(n)))


@njit(inline="always", **_JIT)
def _log32(x):
    """log32 of one float32 (vgc_ref.portable.log32)."""
    X = np.float64(x)
    if X != X:
        return x
    if X < 0.0:
        return np.uint32(NAN32_BITS).view(np.float32)
    if X == 0.0:
        return np.float32(-np.inf)
    if X == np.inf:
        return np.float32(np.inf)
    m, e = math.frexp(X)
    if m < SQRT_HALF:
        m = 2.0 * m
        e = e - 1
    f = m - 1.0
    u = f / (2.0 + f)
    w = u * u
    P = LOG_Q[10]
    for k in range(9, 0, -1):
        P = P * w + LOG_Q[k]
    L = 2.0 * u + u * (w * P)
    return np.float32(np.float64(e) * LN2 + L)


@njit(parallel=True, **_JIT)
def _exp32_flat(x, out):
    n = out.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        for j in range(c * CHUNK, min(c * CHUNK + CHUNK, n)):
            out[j] = _exp32(x[j])


@njit(parallel=True, **_JIT)
def _log32_flat(x, out):
    n = out.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        for j in range(c * CHUNK, min(c * CHUNK + CHUNK, n)):
            out[j] = _log32(x[j])


# --------------------------------------------------------------------------------------
# Public functions: the reference's names, arguments and checks
# --------------------------------------------------------------------------------------


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A B, ordered over k; twin of :func:`vgc_ref.portable.matmul` (a: [m, K], b: [K, n])."""
    check_product(a, b, 1, 0)
    out = np.zeros((a.shape[0], b.shape[1]), np.float32)
    _matmul(np.ascontiguousarray(a), np.ascontiguousarray(b), out)
    return out


def matmul_tn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A^T B, ordered over k; twin of :func:`vgc_ref.portable.matmul_tn` (a: [K, m], b: [K, n])."""
    check_product(a, b, 0, 0)
    out = np.zeros((a.shape[1], b.shape[1]), np.float32)
    _matmul_tn(np.ascontiguousarray(a), np.ascontiguousarray(b), out)
    return out


def matmul_nt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A B^T, ordered over k; twin of :func:`vgc_ref.portable.matmul_nt` (a: [m, K], b: [n, K]).

    B^T is copied to a contiguous [K, n] first (copying is exact), so that the inner loop
    reads it along j like :func:`matmul`.
    """
    check_product(a, b, 1, 1)
    out = np.zeros((a.shape[0], b.shape[0]), np.float32)
    _matmul(np.ascontiguousarray(a), np.ascontiguousarray(b.T), out)
    return out


def column_sums(a: np.ndarray) -> np.ndarray:
    """Sums over rows, in order; twin of :func:`vgc_ref.portable.column_sums` (a: [m, n])."""
    check_array("a", a)
    out = np.zeros(a.shape[1], np.float32)
    _column_sums(np.ascontiguousarray(a), out)
    return out


def row_sums(a: np.ndarray) -> np.ndarray:
    """Sums over columns, in order; twin of :func:`vgc_ref.portable.row_sums` (a: [m, n]).

    The column sums of a contiguous copy of A^T (copying is exact): the same additions
    in the same order, vectorized across rows.
    """
    check_array("a", a)
    out = np.zeros(a.shape[0], np.float32)
    _column_sums(np.ascontiguousarray(a.T), out)
    return out


def exp32(x: np.ndarray) -> np.ndarray:
    """e^x, float32 in and out; twin of :func:`vgc_ref.portable.exp32` (any shape)."""
    check_array("x", x, ndim=None)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.shape[0], np.float32)
    _exp32_flat(flat, out)
    return out.reshape(x.shape)


def log32(x: np.ndarray) -> np.ndarray:
    """log(x), float32 in and out; twin of :func:`vgc_ref.portable.log32` (any shape)."""
    check_array("x", x, ndim=None)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.shape[0], np.float32)
    _log32_flat(flat, out)
    return out.reshape(x.shape)


def dense_grad_var(x: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """g_W, s_W, g_b, s_b of a dense layer; twin of :func:`vgc_ref.variance.dense_grad_var`.

    g_W and s_W in one kernel (x[k, i] and its square are loaded once for both), with
    each element's additions in the reference's order (docs/algorithm.md section 2):
    ``g_W = matmul_tn(x, D)``, ``s_W = matmul_tn(x*x, D*D)``, ``g_b = column_sums(D)``,
    ``s_b = column_sums(D*D)``.
    """
    _check_pair(x, delta)
    x = np.ascontiguousarray(x)
    delta = np.ascontiguousarray(delta)
    d2 = delta * delta  # float32[B, out], each square rounded
    g_w = np.zeros((x.shape[1], delta.shape[1]), np.float32)
    s_w = np.zeros_like(g_w)
    _grad_var(x, delta, d2, g_w, s_w)
    g_b = np.zeros(delta.shape[1], np.float32)
    s_b = np.zeros(delta.shape[1], np.float32)
    _column_sums(delta, g_b)
    _column_sums(d2, s_b)
    return g_w, s_w, g_b, s_b
