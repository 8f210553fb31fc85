"""Numba kernels of the portable primitives, bit-identical to :mod:`vgc_ref.portable`.

Each public function has the name, the arguments and the results of its twin in
:mod:`vgc_ref.portable` and gives the same bits (tests/test_portable.py checks it on
Hypothesis inputs, and that the results do not depend on the number of threads).

How the order is kept while the loops run fast::

    Python   validate (the reference's own checks: Numba does not check bounds)
    kernel   parallel over blocks of four output rows i (prange); for them, the shared
             index k runs in increasing order in the outer loop and the output column
             j in the inner one:  out[i, j] = out[i, j] + a[i, k] * b[k, j]  for all j
             and the four i, then k + 1. The inner loop is vectorized across j
             (independent elements), so every element sees the reference's additions
             in the reference's order, with no reassociation; a thread owns whole
             rows, so the thread count changes nothing. Small inputs run on the
             calling thread (SERIAL_BELOW): the same loops, compiled without prange.

One kernel serves the three products: A B and A B^T copy their operands to [K, m] and
[K, n] first (copying is exact) and run the A^T B kernel.

All kernels are compiled with ``fastmath=False``: LLVM may not fuse a multiply and an add
into an FMA, reassociate or flush subnormals (tests/test_portable.py searches their
assembly for FMA instructions). ``exp32`` and ``log32`` are the reference's float64
algorithms, operation for operation.
"""

from __future__ import annotations

import types as pytypes

import numpy as np
from numba import njit, prange

from vgc_ref import portable
from vgc_ref.portable import check_array, check_product
from vgc_ref.variance import _check_pair

#: error_model "numpy": a float division by zero gives IEEE's result instead of raising,
#: so log32's one division is not guarded by a branch that stops vectorization (its
#: divisor 2 + f is never zero).
_JIT = {"cache": True, "fastmath": False, "nogil": True, "error_model": "numpy"}

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
def _matmul_tn(a, b, out):
    """out[i, :] += a[k, i] * b[k, :] for k = 0..K-1 in order; out holds +0.0.

    Four rows i at a time, so that each b[k, j] is loaded once for the four; each
    element still gets its K additions one after the other, in order.
    """
    m = out.shape[0]
    for block in prange((m + 3) // 4):
        i = 4 * block
        if i + 4 <= m:
            o0, o1, o2, o3 = out[i], out[i + 1], out[i + 2], out[i + 3]
            for k in range(a.shape[0]):
                a0, a1, a2, a3 = a[k, i], a[k, i + 1], a[k, i + 2], a[k, i + 3]
                bk = b[k]
                for j in range(bk.shape[0]):
                    bkj = bk[j]
                    o0[j] = o0[j] + a0 * bkj
                    o1[j] = o1[j] + a1 * bkj
                    o2[j] = o2[j] + a2 * bkj
                    o3[j] = o3[j] + a3 * bkj
        else:
            for r in range(i, m):
                row = out[r]
                for k in range(a.shape[0]):
                    ark = a[k, r]
                    bk = b[k]
                    for j in range(bk.shape[0]):
                        row[j] = row[j] + ark * bk[j]


@njit(parallel=True, **_JIT)
def _grad_var(x, delta, d2, g_w, s_w):
    """g_W[i, :] += x[k, i] * D[k, :] and s_W[i, :] += (x[k, i]^2) * D2[k, :], k in order.

    :func:`_matmul_tn` twice over, fused: four rows i at a time, D[k] and D2[k] loaded
    once for the four rows of both outputs.
    """
    m = g_w.shape[0]
    for block in prange((m + 3) // 4):
        i = 4 * block
        if i + 4 <= m:
            g0, g1, g2, g3 = g_w[i], g_w[i + 1], g_w[i + 2], g_w[i + 3]
            s0, s1, s2, s3 = s_w[i], s_w[i + 1], s_w[i + 2], s_w[i + 3]
            for k in range(x.shape[0]):
                a0, a1, a2, a3 = x[k, i], x[k, i + 1], x[k, i + 2], x[k, i + 3]
                b0, b1, b2, b3 = a0 * a0, a1 * a1, a2 * a2, a3 * a3
                dk = delta[k]
                d2k = d2[k]
                for j in range(dk.shape[0]):
                    d = dk[j]
                    e = d2k[j]
                    g0[j] = g0[j] + a0 * d
                    g1[j] = g1[j] + a1 * d
                    g2[j] = g2[j] + a2 * d
                    g3[j] = g3[j] + a3 * d
                    s0[j] = s0[j] + b0 * e
                    s1[j] = s1[j] + b1 * e
                    s2[j] = s2[j] + b2 * e
                    s3[j] = s3[j] + b3 * e
        else:
            for r in range(i, m):
                g_row = g_w[r]
                s_row = s_w[r]
                for k in range(x.shape[0]):
                    xkr = x[k, r]
                    xkr2 = xkr * xkr
                    dk = delta[k]
                    d2k = d2[k]
                    for j in range(dk.shape[0]):
                        g_row[j] = g_row[j] + xkr * dk[j]
                        s_row[j] = s_row[j] + xkr2 * d2k[j]


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
    """exp32 of one float32 (vgc_ref.portable.exp32), without branches or calls.

    2^n is built from its bits (n in [-150, 129], a normal float64, so p * 2^n is exact
    like ldexp); out-of-range inputs run the polynomial on 0.0 and are replaced at the
    end. Straight-line code, so LLVM vectorizes the loops that call it.
    """
    X = np.float64(x)
    inside = (X <= EXP_HI) & (X >= EXP_LO)  # False for NaN
    Xc = X if inside else 0.0
    n = np.rint(Xc * INV_LN2)
    r = (Xc - n * LN2_HI) - n * LN2_LO
    p = EXP_C[13]
    for k in range(12, -1, -1):
        p = p * r + EXP_C[k]
    two_n = np.int64((np.int64(n) + 1023) << 52).view(np.float64)
    y = np.float32(p * two_n)
    if X > EXP_HI:
        y = np.float32(np.inf)
    if X < EXP_LO:
        y = np.float32(0.0)
    if X != X:
        y = x
    return y


@njit(inline="always", **_JIT)
def _log32(x):
    """log32 of one float32 (vgc_ref.portable.log32), without branches or calls.

    frexp from the bits: a float32 > 0 widens to a normal float64, so m is X with its
    exponent field set to that of 0.5 and e the difference (exact). Inputs outside
    (0, inf) run the polynomial on 1.0 and are replaced at the end.
    """
    X = np.float64(x)
    inside = (X > 0.0) & (X < np.inf)  # False for NaN
    bits = np.float64(X if inside else 1.0).view(np.int64)
    e = ((bits >> 52) & 0x7FF) - 1022
    m = np.int64((bits & 0x000FFFFFFFFFFFFF) | (1022 << 52)).view(np.float64)  # 0.5 <= m < 1
    low = m < SQRT_HALF
    m = 2.0 * m if low else m
    e = e - 1 if low else e
    f = m - 1.0
    u = f / (2.0 + f)
    w = u * u
    P = LOG_Q[10]
    for k in range(9, 0, -1):
        P = P * w + LOG_Q[k]
    L = 2.0 * u + u * (w * P)
    y = np.float32(np.float64(e) * LN2 + L)
    if X == np.inf:
        y = np.float32(np.inf)
    if X == 0.0:
        y = np.float32(-np.inf)
    if X < 0.0:
        y = np.uint32(NAN32_BITS).view(np.float32)
    if X != X:
        y = x
    return y


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


#: Below this many multiply-adds (or elements), a kernel runs on the calling thread: waking
#: the thread pool costs more than the work (the demo's layers are this small). The same
#: Python function compiled without ``parallel``: prange is range, the bits are the same.
SERIAL_BELOW = 1 << 20


def _serial_twin(kernel):
    """``kernel`` compiled without ``parallel``, under a name of its own (Numba's cache
    files are named after the function, and must not mix the two compilations)."""
    f = kernel.py_func
    twin = pytypes.FunctionType(
        f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__, f.__closure__
    )
    twin.__qualname__ = f.__qualname__ + "_serial"
    return njit(**_JIT)(twin)


_serial = {
    kernel: _serial_twin(kernel) for kernel in (_matmul_tn, _grad_var, _column_sums, _exp32_flat, _log32_flat)
}


def _pick(kernel, work: int):
    return _serial[kernel] if work < SERIAL_BELOW else kernel


# --------------------------------------------------------------------------------------
# Public functions: the reference's names, arguments and checks
# --------------------------------------------------------------------------------------


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A B, ordered over k; twin of :func:`vgc_ref.portable.matmul` (a: [m, K], b: [K, n])."""
    check_product(a, b, 1, 0)
    out = np.zeros((a.shape[0], b.shape[1]), np.float32)
    a_t = np.ascontiguousarray(a.T)  # [K, m]: the kernel reads a[i, k] as a_t[k, i]
    _pick(_matmul_tn, out.size * a.shape[1])(a_t, np.ascontiguousarray(b), out)
    return out


def matmul_tn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A^T B, ordered over k; twin of :func:`vgc_ref.portable.matmul_tn` (a: [K, m], b: [K, n])."""
    check_product(a, b, 0, 0)
    out = np.zeros((a.shape[1], b.shape[1]), np.float32)
    _pick(_matmul_tn, out.size * a.shape[0])(np.ascontiguousarray(a), np.ascontiguousarray(b), out)
    return out


def matmul_nt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A B^T, ordered over k; twin of :func:`vgc_ref.portable.matmul_nt` (a: [m, K], b: [n, K]).

    A^T and B^T are copied to contiguous [K, m] and [K, n] first (copying is exact), so
    that the one kernel of :func:`matmul_tn` runs it, reading B along j.
    """
    check_product(a, b, 1, 1)
    out = np.zeros((a.shape[0], b.shape[0]), np.float32)
    a_t, b_t = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)  # [K, m], [K, n]
    _pick(_matmul_tn, out.size * a.shape[1])(a_t, b_t, out)
    return out


def column_sums(a: np.ndarray) -> np.ndarray:
    """Sums over rows, in order; twin of :func:`vgc_ref.portable.column_sums` (a: [m, n])."""
    check_array("a", a)
    out = np.zeros(a.shape[1], np.float32)
    _pick(_column_sums, a.size)(np.ascontiguousarray(a), out)
    return out


def row_sums(a: np.ndarray) -> np.ndarray:
    """Sums over columns, in order; twin of :func:`vgc_ref.portable.row_sums` (a: [m, n]).

    The column sums of a contiguous copy of A^T (copying is exact): the same additions
    in the same order, vectorized across rows.
    """
    check_array("a", a)
    out = np.zeros(a.shape[0], np.float32)
    _pick(_column_sums, a.size)(np.ascontiguousarray(a.T), out)
    return out


def exp32(x: np.ndarray) -> np.ndarray:
    """e^x, float32 in and out; twin of :func:`vgc_ref.portable.exp32` (any shape)."""
    check_array("x", x, ndim=None)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.shape[0], np.float32)
    _pick(_exp32_flat, out.size)(flat, out)
    return out.reshape(x.shape)


def log32(x: np.ndarray) -> np.ndarray:
    """log(x), float32 in and out; twin of :func:`vgc_ref.portable.log32` (any shape)."""
    check_array("x", x, ndim=None)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty(flat.shape[0], np.float32)
    _pick(_log32_flat, out.size)(flat, out)
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
    _pick(_grad_var, 2 * g_w.size * x.shape[0])(x, delta, d2, g_w, s_w)
    g_b = np.zeros(delta.shape[1], np.float32)
    s_b = np.zeros(delta.shape[1], np.float32)
    _pick(_column_sums, delta.size)(delta, g_b)
    _pick(_column_sums, d2.size)(d2, s_b)
    return g_w, s_w, g_b, s_b
