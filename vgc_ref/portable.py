"""Portable primitives: matrix products, sums, exp and log with one fixed rounding.

Every function here gives the same bits on every machine, with any BLAS, NumPy version
or thread count, because each one is defined as a sequence of IEEE-754 operations
(docs/demo.md, "Arithmetic of one step", "Portable primitives"; docs/algorithm.md
section 2). An independent implementation reproduces them with nothing but float32
(and, for exp32 and log32, float64) additions and multiplications, each rounded to
nearest-even on its own: no fused multiply-add, no reassociation, no flush-to-zero.

* products (``matmul``, ``matmul_tn``, ``matmul_nt``): the accumulator starts at +0.0
  and adds the separately rounded float32 products over the shared index k in
  increasing order;
* sums (``column_sums``, ``row_sums``): the same without products;
* ``exp32`` and ``log32``: float32 in, float32 out, computed in float64 by a fixed
  polynomial and rounded to float32 once.

This is the plain NumPy reference: whole-array float32 operations, which NumPy rounds
one by one and never fuses. ``vgc_ref.backends.numba_portable`` holds the fast kernels
with the same names and arguments and the same bits.
"""

from __future__ import annotations

from math import factorial

import numpy as np

from vgc_ref.errors import InputError

# exp32 (docs/demo.md, "Portable primitives"): Cody-Waite reduction by ln 2, then a
# degree-13 Taylor polynomial in Horner form on |r| <= ln(2)/2.
EXP_HI = 89.0  # above: +inf (float32 overflows from ln(FLT_MAX) = 88.72...)
EXP_LO = -104.0  # below: +0.0 (float32 rounds to zero below ln(2^-150) = -103.97...)
INV_LN2 = float.fromhex("0x1.71547652b82fep+0")
LN2_HI = float.fromhex("0x1.62e42fee00000p-1")  # 33 significant bits: n * LN2_HI is exact
LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
EXP_C = tuple(1.0 / factorial(k) for k in range(14))  # C[k] = float64 nearest 1/k!

# log32: x = m * 2^e with sqrt(1/2) <= m < sqrt(2), then log(m) = 2 atanh(u),
# u = (m - 1) / (m + 1), as an odd series in u (degree 21).
SQRT_HALF = float.fromhex("0x1.6a09e667f3bcdp-1")
LN2 = float.fromhex("0x1.62e42fefa39efp-1")
LOG_Q = (0.0, *(2.0 / (2 * k + 1) for k in range(1, 11)))  # Q[k], k = 1..10 (Q[0] unused)

#: log32's result for x < 0 (and -inf): the float32 quiet NaN with bits 0x7FC00000.
NAN32 = np.uint32(0x7FC00000).view(np.float32)


# --------------------------------------------------------------------------------------
# Validation (shared with the Numba kernels, which do not check bounds)
# --------------------------------------------------------------------------------------


def check_array(name: str, a: object, ndim: int | None = 2) -> None:
    """Raise InputError unless ``a`` is a float32 numpy.ndarray (with ``ndim`` dimensions)."""
    if not isinstance(a, np.ndarray):
        raise InputError(name, type(a).__name__, "must be a numpy.ndarray")
    if a.dtype != np.float32:
        raise InputError(name, f"dtype {a.dtype}", "must have dtype float32")
    if ndim is not None and a.ndim != ndim:
        raise InputError(name, f"shape {a.shape}", f"must be {ndim}-D")


def check_product(a: object, b: object, a_axis: int, b_axis: int) -> None:
    """Validate the operands of a product whose shared index is ``a``'s axis ``a_axis``
    and ``b``'s axis ``b_axis``: both float32 and 2-D, the two axes of one length."""
    check_array("a", a)
    check_array("b", b)
    if a.shape[a_axis] != b.shape[b_axis]:
        raise InputError(
            "b",
            f"shape {b.shape}",
            f"axis {b_axis} must have the length of a's axis {a_axis} ({a.shape[a_axis]}), the summed index",
        )


# --------------------------------------------------------------------------------------
# Ordered products and sums
# --------------------------------------------------------------------------------------


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A B with a fixed order: ``out[i,j] = (((+0.0 + a[i,0]*b[0,j]) + a[i,1]*b[1,j]) + ...)``.

    Each product is rounded to float32, then added to the float32 accumulator (one
    rounding), k = 0, 1, ..., K-1 in increasing order; no fused multiply-add.

    Parameters
    ----------
    a : numpy.ndarray
        float32[m, K].
    b : numpy.ndarray
        float32[K, n].

    Returns
    -------
    numpy.ndarray
        float32[m, n] (zeros when K = 0).
    """
    check_product(a, b, 1, 0)
    out = np.zeros((a.shape[0], b.shape[1]), np.float32)  # float32[m, n], +0.0
    for k in range(a.shape[1]):
        out += a[:, k, None] * b[k]  # float32 product, rounded; then float32 add, rounded
    return out


def matmul_tn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A^T B with a fixed order: ``out[i,j] = (((+0.0 + a[0,i]*b[0,j]) + a[1,i]*b[1,j]) + ...)``.

    The elements of A are read in place (no transposed copy changes anything: copying
    is exact). Order and rounding as in :func:`matmul`: over k = 0..K-1, increasing.

    Parameters
    ----------
    a : numpy.ndarray
        float32[K, m].
    b : numpy.ndarray
        float32[K, n].

    Returns
    -------
    numpy.ndarray
        float32[m, n].
    """
    check_product(a, b, 0, 0)
    out = np.zeros((a.shape[1], b.shape[1]), np.float32)  # float32[m, n]
    for k in range(a.shape[0]):
        out += a[k, :, None] * b[k]
    return out


def matmul_nt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A B^T with a fixed order: ``out[i,j] = (((+0.0 + a[i,0]*b[j,0]) + a[i,1]*b[j,1]) + ...)``.

    Order and rounding as in :func:`matmul`: over k = 0..K-1, increasing.

    Parameters
    ----------
    a : numpy.ndarray
        float32[m, K].
    b : numpy.ndarray
        float32[n, K].

    Returns
    -------
    numpy.ndarray
        float32[m, n].
    """
    check_product(a, b, 1, 1)
    out = np.zeros((a.shape[0], b.shape[0]), np.float32)  # float32[m, n]
    for k in range(a.shape[1]):
        out += a[:, k, None] * b[:, k]
    return out


def column_sums(a: np.ndarray) -> np.ndarray:
    """Sum over rows in order: ``out[j] = ((+0.0 + a[0,j]) + a[1,j]) + ... + a[m-1,j]``.

    Parameters
    ----------
    a : numpy.ndarray
        float32[m, n].

    Returns
    -------
    numpy.ndarray
        float32[n] (zeros when m = 0).
    """
    check_array("a", a)
    out = np.zeros(a.shape[1], np.float32)  # float32[n]
    for i in range(a.shape[0]):
        out += a[i]
    return out


def row_sums(a: np.ndarray) -> np.ndarray:
    """Sum over columns in order: ``out[i] = ((+0.0 + a[i,0]) + a[i,1]) + ... + a[i,n-1]``.

    Parameters
    ----------
    a : numpy.ndarray
        float32[m, n].

    Returns
    -------
    numpy.ndarray
        float32[m] (zeros when n = 0).
    """
    check_array("a", a)
    out = np.zeros(a.shape[0], np.float32)  # float32[m]
    for j in range(a.shape[1]):
        out += a[:, j]
    return out


# --------------------------------------------------------------------------------------
# exp32 and log32
# --------------------------------------------------------------------------------------


def exp32(x: np.ndarray) -> np.ndarray:
    """e^x for float32 x, computed in float64 and rounded to float32 once.

    With X = float64(x)::

        X > 89.0     ->  +inf
        X < -104.0   ->  +0.0
        otherwise:   n = rint(X * INV_LN2)                   (nearest integer, ties to even)
                     r = (X - n * LN2_HI) - n * LN2_LO
                     p = C[13]; p = p * r + C[k] for k = 12, ..., 0   (two roundings each)
                     float32(p * 2^n)                         (the scaling is exact)

    with C[k] the float64 nearest 1/k!. NaN gives that same NaN back. Within one float32
    ulp of e^x for every float32 x (tests/test_portable.py checks all of them).

    Parameters
    ----------
    x : numpy.ndarray
        float32, any shape.

    Returns
    -------
    numpy.ndarray
        float32, the shape of x.
    """
    check_array("x", x, ndim=None)
    shape, x = x.shape, x.reshape(-1)  # 1-D inside (a 0-d array's results would be scalars)
    big = x > EXP_HI  # bool, shape of x
    small = x < EXP_LO
    nan = np.isnan(x)
    with np.errstate(invalid="ignore"):  # a signalling NaN widens to a quiet one: replaced below
        X = np.where(big | small | nan, 0.0, x.astype(np.float64))  # float64; 0.0 where set below
    n = np.rint(X * INV_LN2)  # float64, integers in [-150, 129]
    r = (X - n * LN2_HI) - n * LN2_LO  # float64, |r| <= 0.35
    p = np.full_like(r, EXP_C[13])
    for k in range(12, -1, -1):
        p = p * r + EXP_C[k]
    with np.errstate(over="ignore"):  # 88.72 < x <= 89 rounds to +inf, as it should
        out = np.ldexp(p, n.astype(np.int32)).astype(np.float32)  # the one rounding to float32
    out[big] = np.inf
    out[small] = 0.0
    out[nan] = x[nan]
    return out.reshape(shape)


def log32(x: np.ndarray) -> np.ndarray:
    """Natural logarithm for float32 x, computed in float64 and rounded to float32 once.

    For finite x > 0, with X = float64(x)::

        (m, e) = frexp(X)                     X = m * 2^e, 0.5 <= m < 1 (exact)
        if m < SQRT_HALF: m = 2m, e = e - 1   (exact)
        f = m - 1 (exact);  u = f / (2 + f);  w = u * u
        P = Q[10]; P = P * w + Q[k] for k = 9, ..., 1    (two roundings each)
        L = 2u + u * (w * P)                  (the products first, then the one addition)
        float32(float64(e) * LN2 + L)

    with Q[k] the float64 nearest 2 / (2k + 1). The other inputs follow IEEE-754's log:
    log32(+inf) = +inf, log32(+-0) = -inf, log32(x < 0) = NaN (bits 0x7FC00000, -inf
    included), and NaN gives that same NaN back. Within one float32 ulp of log(x) for
    every positive float32 x (tests/test_portable.py checks all of them).

    Parameters
    ----------
    x : numpy.ndarray
        float32, any shape.

    Returns
    -------
    numpy.ndarray
        float32, the shape of x.
    """
    check_array("x", x, ndim=None)
    shape, x = x.shape, x.reshape(-1)
    with np.errstate(invalid="ignore"):  # a signalling NaN widens to a quiet one: replaced below
        X = x.astype(np.float64)
    ok = (X > 0.0) & (X < np.inf)  # finite and positive: the formula's domain
    m, e = np.frexp(np.where(ok, X, 1.0))  # float64, int32
    low = m < SQRT_HALF
    m = np.where(low, 2.0 * m, m)
    e = np.where(low, e - 1, e)
    f = m - 1.0
    u = f / (2.0 + f)
    w = u * u
    P = np.full_like(w, LOG_Q[10])
    for k in range(9, 0, -1):
        P = P * w + LOG_Q[k]
    L = 2.0 * u + u * (w * P)
    out = (e.astype(np.float64) * LN2 + L).astype(np.float32)
    out[X == np.inf] = np.inf
    out[X == 0.0] = -np.inf
    out[X < 0.0] = NAN32
    nan = np.isnan(x)
    out[nan] = x[nan]
    return out.reshape(shape)
