"""A small 1-D convolutional network in NumPy for MNIST-1D: three convolutions and a dense layer.

Architecture (after the MNIST-1D paper's CNN: three stride-2 convolutions, then a linear
classifier), channels last, activations float32[B, positions, channels]::

    input  [B, 40, 1]
    conv0  kernel 5, stride 2, padding 2, 1 -> C0 channels, ReLU    [B, 20, C0]
    conv1  kernel 3, stride 2, padding 1, C0 -> C1, ReLU            [B, 10, C1]
    conv2  kernel 3, stride 2, padding 1, C1 -> C2, ReLU            [B,  5, C2]
    dense  flatten (position major, then channel) -> classes       [B, classes]

Segments, in order: conv0.W, conv0.b, conv1.W, conv1.b, conv2.W, conv2.b, dense.W,
dense.b. A convolution's W is float32[kernel*C_in, C_out] in the im2col column order of
:func:`vgc_ref.variance.im2col1d` (``k*C_in + c``), so a convolution is the dense layer
``y = mm(patches, W) (+) b`` over the B*P rows of its patches (b major, then position).

The arithmetic is docs/demo.md "The CNN", in the products namespace of
:func:`mpi_demo.model.products` like the MLP's:

3. forward: ``X_l = im2col(h_l)`` (copies), ``y = mm(X_l, W_l) (+) b_l``, ReLU; the dense
   layer as in the MLP;
4. softmax cross-entropy: :func:`mpi_demo.model.softmax_xent`;
5. ``D`` of the logits as in the MLP; below a convolution,
   ``dX = mm_nt(D_l, W_l)``, ``dh = col2im(dX)`` (:func:`vgc_ref.variance.col2im1d`: from
   +0.0, the overlapping patch entries added in increasing kernel offset), then ReLU's mask;
6. ``g_W = mm_tn(X_l, D_l)``, ``g_b = colsum(D_l)`` over all B*P rows;
7. dense: ``s_W = mm_tn(x*x, D*D)``; convolution: ``--variance exact``, the per-sample form
   ``s_W = sum_b (X_b^T D_b)^2``, or ``approx``, ``mm_tn(X*X, D*D)`` over all B*P rows
   (:func:`vgc_ref.variance.conv_var`, :mod:`vgc_ref.backends.numba_conv`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mpi_demo import model, rng
from mpi_demo.data import INIT_STREAM
from vgc_ref.variance import col2im1d, im2col1d

#: (kernel, stride, padding) of the three convolutions.
GEOMETRY = ((5, 2, 2), (3, 2, 1), (3, 2, 1))


def lengths(length: int) -> list[int]:
    """Positions of the input and of each convolution's output."""
    out = [length]
    for k, s, p in GEOMETRY:
        out.append((out[-1] + 2 * p - k) // s + 1)
    return out


def segment_layout(length: int, channels: Sequence[int], classes: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every segment, in segment order."""
    layout = []
    c_in = 1
    for layer, ((k, _, _), c_out) in enumerate(zip(GEOMETRY, channels)):
        layout += [(f"conv{layer}.W", (k * c_in, c_out)), (f"conv{layer}.b", (c_out,))]
        c_in = c_out
    flat = lengths(length)[-1] * channels[-1]
    layout += [("dense.W", (flat, classes)), ("dense.b", (classes,))]
    return layout


def init_params(layout: Sequence[tuple[str, tuple[int, ...]]], seed: int) -> list[np.ndarray]:
    """He-normal weights (fan-in = rows of W) and zero biases, as the MLP's (docs/demo.md).

    ``W[i, j] = float32(normal(key(seed, 1, l), out*i + j) * sqrt(2.0 / rows))`` for the
    l-th weight segment (l = 0, 1, 2 the convolutions, 3 the dense layer).
    """
    params = []
    for layer, (_, shape) in enumerate(layout[0::2]):
        n_in, n_out = shape
        params += [
            rng.he_normal32(rng.key(seed, INIT_STREAM, layer), n_in, n_out),
            np.zeros(n_out, np.float32),
        ]
    return params


def _weights(params, layout):
    for layer in range(len(layout) // 2):
        yield params[2 * layer].reshape(layout[2 * layer][1]), params[2 * layer + 1]


def forward(params, layout, x: np.ndarray, ops):
    """Step 3: every convolution's patches and output, the flattened features and the logits.

    Returns
    -------
    patches : list of float32[B, P_l, K_l]
    hs : list of float32[B, P, C]; hs[l] is the input of convolution l (hs[0] = x[:, :, None])
    flat : float32[B, P*C], the dense layer's input
    logits : float32[B, classes]
    """
    batch = x.shape[0]
    h = x.reshape(batch, x.shape[1], 1)
    hs, patches = [h], []
    weights = list(_weights(params, layout))
    for (w, b), (k, s, p) in zip(weights[:-1], GEOMETRY):
        cols = im2col1d(h, k, s, p)
        n_pos = cols.shape[1]
        y = ops.matmul(cols.reshape(batch * n_pos, -1), w) + b
        h = model._relu_mask(y, y).reshape(batch, n_pos, -1)
        patches.append(cols)
        hs.append(h)
    flat = h.reshape(batch, -1)
    w, b = weights[-1]
    return patches, hs, flat, ops.matmul(flat, w) + b


def backward(params, layout, patches, hs, flat, probs, y, ops):
    """Step 5: D of the dense layer (float32[B, classes]) and of every convolution (float32[B, P, C])."""
    batch = probs.shape[0]
    rows = np.arange(batch)
    d = probs.copy()
    d[rows, y] = probs[rows, y] - np.float32(1.0)
    d = d / np.float32(batch)
    weights = list(_weights(params, layout))
    d_dense = d
    d = model._relu_mask(ops.matmul_nt(d, weights[-1][0]), flat).reshape(hs[-1].shape)
    deltas = [d]
    for layer in range(len(GEOMETRY) - 1, 0, -1):
        w = weights[layer][0]
        k, s, p = GEOMETRY[layer]
        n_pos = d.shape[1]
        d_cols = ops.matmul_nt(d.reshape(batch * n_pos, -1), w).reshape(batch, n_pos, -1)
        dh = col2im1d(d_cols, hs[layer].shape[1], k, s, p)
        d = model._relu_mask(dh, hs[layer])
        deltas.append(d)
    deltas.reverse()
    return deltas, d_dense


def weight_grads(patches, deltas, flat, d_dense, ops) -> list[np.ndarray]:
    """Step 6: g of every segment, flattened."""
    grads = []
    for cols, d in zip(patches, deltas):
        rows = cols.shape[0] * cols.shape[1]
        d2 = d.reshape(rows, -1)
        grads += [ops.matmul_tn(cols.reshape(rows, -1), d2).ravel(), ops.column_sums(d2)]
    grads += [ops.matmul_tn(flat, d_dense).ravel(), ops.column_sums(d_dense)]
    return grads


def _conv_var_blas(cols: np.ndarray, d: np.ndarray, form: str):
    """NumPy/BLAS version of the convolution variance (machine-specific rounding)."""
    if form == "approx":
        x2 = (cols * cols).reshape(-1, cols.shape[2])
        d2 = (d * d).reshape(-1, d.shape[2])
        return x2.T @ d2, d2.sum(axis=0)
    g = np.einsum("bpi,bpj->bij", cols, d)
    e = d.sum(axis=1)
    return (g * g).sum(axis=0), (e * e).sum(axis=0)


def variance_terms(patches, deltas, flat, d_dense, ops, form: str) -> list[np.ndarray]:
    """Step 7: s of every segment, flattened; ``form`` is the convolutions' "exact" or "approx"."""
    if getattr(ops, "name", "ordered") == "blas":
        conv_var = _conv_var_blas
    else:
        from vgc_ref.backends.numba_conv import conv_var
    terms = []
    for cols, d in zip(patches, deltas):
        s_w, s_b = conv_var(cols, d, form)
        terms += [s_w.ravel(), s_b]
    d2 = d_dense * d_dense
    terms += [ops.matmul_tn(flat * flat, d2).ravel(), ops.column_sums(d2)]
    return terms
