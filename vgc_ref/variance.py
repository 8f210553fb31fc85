"""Gradient and variance term of a dense layer (docs/algorithm.md section 2).

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


# --------------------------------------------------------------------------------------
# Convolution layers (docs/algorithm.md section 2.1)
# --------------------------------------------------------------------------------------
#
# A convolution is a dense layer applied at every output position p of every sample b:
# with the im2col patches X[b, p, :] (the inputs the filter sees at p), y[b, p, :] =
# X[b, p, :] W + bias, W: float32[K, out] with K = in_channels * kernel size. The
# per-sample gradient of W is B * X_b^T D_b (a sum over the P positions), so
#
#     g_W = sum_b X_b^T D_b                 (one product over all B*P rows)
#     s_W = sum_b (X_b^T D_b)^2             exact: B products, squared, summed over b
#     s~_W = (X o X)^T (D o D)              approx: every position taken as a sample
#
# and for the bias (its patch is 1): g_b = sum_{b,p} D, s_b = sum_b (sum_p D_bp)^2,
# s~_b = sum_{b,p} D_bp^2. For every element 0 <= s <= P * s~ (Cauchy-Schwarz over the P
# positions) and s = s~ when P = 1.

CONV_VARIANCE_FORMS = ("exact", "approx")


def _check_conv_pair(patches: np.ndarray, delta: np.ndarray) -> None:
    for name, a in (("patches", patches), ("delta", delta)):
        if not isinstance(a, np.ndarray):
            raise InputError(name, type(a).__name__, "must be a numpy.ndarray")
        if a.dtype != np.float32:
            raise InputError(name, f"dtype {a.dtype}", "must have dtype float32")
        if a.ndim != 3:
            raise InputError(name, f"shape {a.shape}", "must be 3-D (batch, positions, features)")
    if patches.shape[:2] != delta.shape[:2]:
        raise InputError(
            "delta", f"shape {delta.shape}", f"must match patches' batch and positions {patches.shape[:2]}"
        )
    if patches.shape[0] == 0 or patches.shape[1] == 0:
        raise InputError("patches", f"shape {patches.shape}", "needs at least one sample and one position")


def _check_geometry(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(name, value, f"must be an integer >= {minimum}")


def conv_out_length(length: int, kernel: int, stride: int, padding: int) -> int:
    """Output positions of a convolution: ``(length + 2 padding - kernel) // stride + 1``."""
    return (length + 2 * padding - kernel) // stride + 1


def im2col1d(x: np.ndarray, kernel: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Patches of a 1-D convolution, channels last.

    ``patches[b, p, k*C + c] = xpad[b, p*stride + k, c]`` with ``xpad`` the input padded
    with ``padding`` zeros on both ends. Copies only: exact.

    Parameters
    ----------
    x : numpy.ndarray
        float32[B, L, C].
    kernel, stride, padding : int
        Kernel size (>= 1), stride (>= 1) and zero padding on each side (>= 0).

    Returns
    -------
    numpy.ndarray
        float32[B, P, kernel*C] with P = (L + 2 padding - kernel) // stride + 1.
    """
    check_array_3d("x", x)
    _check_geometry("kernel", kernel, 1)
    _check_geometry("stride", stride, 1)
    _check_geometry("padding", padding, 0)
    batch, length, channels = x.shape
    positions = conv_out_length(length, kernel, stride, padding)
    if positions < 1:
        raise InputError("kernel", kernel, f"is longer than the padded input ({length + 2 * padding})")
    xpad = np.zeros((batch, length + 2 * padding, channels), x.dtype)
    xpad[:, padding : padding + length] = x
    out = np.empty((batch, positions, kernel, channels), x.dtype)
    for k in range(kernel):
        out[:, :, k] = xpad[:, k : k + stride * (positions - 1) + 1 : stride]
    return out.reshape(batch, positions, kernel * channels)


def col2im1d(grad_patches: np.ndarray, length: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    """The adjoint of :func:`im2col1d`: dL/dx from dL/dpatches, in a fixed order.

    Every input element starts at +0.0 and adds the patch entries that copied it in
    increasing k, each addition rounded to float32::

        dx[b, i, c] = ((+0.0 + G[b, p0, k0*C + c]) + G[b, p1, k1*C + c]) + ...
                      over the (p, k) with p*stride + k - padding = i, k increasing

    Parameters
    ----------
    grad_patches : numpy.ndarray
        float32[B, P, kernel*C].
    length : int
        L, the input length.

    Returns
    -------
    numpy.ndarray
        float32[B, L, C].
    """
    batch, positions, width = grad_patches.shape
    channels = width // kernel
    g = grad_patches.reshape(batch, positions, kernel, channels)
    dpad = np.zeros((batch, length + 2 * padding, channels), g.dtype)
    for k in range(kernel):  # for one k, distinct p write distinct rows: no collisions
        view = dpad[:, k : k + stride * (positions - 1) + 1 : stride]
        view += g[:, :, k]
    return dpad[:, padding : padding + length]


def im2col2d(x: np.ndarray, kernel: tuple[int, int], stride: int = 1, padding: int = 0) -> np.ndarray:
    """Patches of a 2-D convolution, channels last.

    ``patches[b, p*W' + q, (u*kw + v)*C + c] = xpad[b, p*stride + u, q*stride + v, c]``.

    Parameters
    ----------
    x : numpy.ndarray
        float32[B, H, W, C].
    kernel : (int, int)
        (kh, kw).

    Returns
    -------
    numpy.ndarray
        float32[B, H'*W', kh*kw*C].
    """
    check_array_3d("x", x, ndim=4)
    kh, kw = kernel
    for name, v, lo in (("kernel", kh, 1), ("kernel", kw, 1), ("stride", stride, 1), ("padding", padding, 0)):
        _check_geometry(name, v, lo)
    batch, height, width, channels = x.shape
    oh = conv_out_length(height, kh, stride, padding)
    ow = conv_out_length(width, kw, stride, padding)
    if oh < 1 or ow < 1:
        raise InputError("kernel", kernel, f"is larger than the padded input {(height, width)}")
    xpad = np.zeros((batch, height + 2 * padding, width + 2 * padding, channels), x.dtype)
    xpad[:, padding : padding + height, padding : padding + width] = x
    out = np.empty((batch, oh, ow, kh, kw, channels), x.dtype)
    for u in range(kh):
        for v in range(kw):
            out[:, :, :, u, v] = xpad[
                :, u : u + stride * (oh - 1) + 1 : stride, v : v + stride * (ow - 1) + 1 : stride
            ]
    return out.reshape(batch, oh * ow, kh * kw * channels)


def check_array_3d(name: str, a: object, ndim: int = 3) -> None:
    """An input of im2col: float32 (float64 is accepted too: copies are exact in any dtype)."""
    if not isinstance(a, np.ndarray):
        raise InputError(name, type(a).__name__, "must be a numpy.ndarray")
    if a.dtype not in (np.float32, np.float64):
        raise InputError(name, f"dtype {a.dtype}", "must have dtype float32 (or float64)")
    if a.ndim != ndim:
        raise InputError(name, f"shape {a.shape}", f"must be {ndim}-D (channels last)")


def conv_grad(patches: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of a convolution's W and bias from its patches and D = dL/dy.

    The B*P rows (b major, then p) are one dense layer's batch::

        g_W = matmul_tn(X.reshape(B*P, K), D.reshape(B*P, out))
        g_b = column_sums(D.reshape(B*P, out))

    Parameters
    ----------
    patches : numpy.ndarray
        float32[B, P, K] (:func:`im2col1d`, :func:`im2col2d`).
    delta : numpy.ndarray
        float32[B, P, out], D of the mean loss (carries 1/B).

    Returns
    -------
    g_W : float32[K, out]
    g_b : float32[out]
    """
    _check_conv_pair(patches, delta)
    b, p, k = patches.shape
    d = delta.reshape(b * p, -1)
    return matmul_tn(patches.reshape(b * p, k), d), column_sums(d)


def conv_var(patches: np.ndarray, delta: np.ndarray, form: str = "exact") -> tuple[np.ndarray, np.ndarray]:
    """Variance term of a convolution's W and bias, ``form`` "exact" or "approx".

    exact (the per-sample definition, s = (1/B^2) sum_b grad_b^2), in this order::

        G_b   = matmul_tn(X_b, D_b)                       b = 0..B-1, over p in order
        s_W   = ((+0.0 + G_0*G_0) + G_1*G_1) + ...        squares rounded, b in order
        e_b   = column_sums(D_b);  s_b = ((+0.0 + e_0*e_0) + e_1*e_1) + ...

    approx (every output position taken as a sample; one extra product)::

        s_W = matmul_tn((X*X).reshape(B*P, K), (D*D).reshape(B*P, out))
        s_b = column_sums((D*D).reshape(B*P, out))

    For every element, exact <= P * approx in real arithmetic (Cauchy-Schwarz over the P
    positions) and exact = approx when P = 1 (docs/algorithm.md section 2.1).

    Returns
    -------
    s_W : float32[K, out]
    s_b : float32[out]
    """
    _check_conv_pair(patches, delta)
    if form not in CONV_VARIANCE_FORMS:
        raise InputError("form", form, f"must be one of {', '.join(CONV_VARIANCE_FORMS)}")
    b, p, k = patches.shape
    if form == "approx":
        d2 = (delta * delta).reshape(b * p, -1)
        x2 = (patches * patches).reshape(b * p, k)
        return matmul_tn(x2, d2), column_sums(d2)
    s_w = np.zeros((k, delta.shape[2]), np.float32)
    s_b = np.zeros(delta.shape[2], np.float32)
    for i in range(b):
        g = matmul_tn(patches[i], delta[i])
        s_w += g * g
        e = column_sums(delta[i])
        s_b += e * e
    return s_w, s_b


def conv_grad_var(
    patches: np.ndarray, delta: np.ndarray, form: str = "exact"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """g_W, s_W, g_b, s_b of a convolution: :func:`conv_grad` and :func:`conv_var` together."""
    g_w, g_b = conv_grad(patches, delta)
    s_w, s_b = conv_var(patches, delta, form)
    return g_w, s_w, g_b, s_b


def conv1d_grad_var(
    x: np.ndarray, delta: np.ndarray, kernel: int, stride: int = 1, padding: int = 0, form: str = "exact"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """g_W, s_W, g_b, s_b of a 1-D convolution from its input x: float32[B, L, C] and
    D: float32[B, P, out]; W is float32[kernel*C, out] (:func:`im2col1d`'s column order)."""
    return conv_grad_var(im2col1d(x, kernel, stride, padding), delta, form)


def conv2d_grad_var(
    x: np.ndarray,
    delta: np.ndarray,
    kernel: tuple[int, int],
    stride: int = 1,
    padding: int = 0,
    form: str = "exact",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """g_W, s_W, g_b, s_b of a 2-D convolution from x: float32[B, H, W, C] and
    D: float32[B, H'*W', out] (row-major positions); W is float32[kh*kw*C, out]."""
    return conv_grad_var(im2col2d(x, kernel, stride, padding), delta, form)


def per_sample_conv_grad_var(
    patches: np.ndarray, delta: np.ndarray, form: str = "exact"
) -> tuple[np.ndarray, ...]:
    """g_W, s_W, g_b, s_b from explicit per-sample gradients in float64 (slow; for checking).

    exact: grad_b = B * X_b^T D_b, averaged and squared-averaged over the B samples.
    approx: every (b, p) taken as a sample of its own, grad_bp = B * outer(X_bp, D_bp),
    s~ = (1/B^2) sum_{b,p} grad_bp^2. Float64 throughout, rounded to float32 at the end.
    """
    _check_conv_pair(patches, delta)
    batch = patches.shape[0]
    x64 = patches.astype(np.float64)
    d64 = delta.astype(np.float64) * batch
    if form == "exact":
        grads_w = np.einsum("bpi,bpj->bij", x64, d64)  # float64[B, K, out]
        grads_b = d64.sum(axis=1)
    else:
        grads_w = x64[:, :, :, None] * d64[:, :, None, :]  # float64[B, P, K, out]
        grads_b = d64
    axes = tuple(range(grads_w.ndim - 2))
    g_w = grads_w.sum(axis=axes) / batch
    s_w = (grads_w * grads_w).sum(axis=axes) / batch**2
    g_b = grads_b.sum(axis=tuple(range(grads_b.ndim - 1))) / batch
    s_b = (grads_b * grads_b).sum(axis=tuple(range(grads_b.ndim - 1))) / batch**2
    return tuple(a.astype(np.float32) for a in (g_w, s_w, g_b, s_b))
