"""A small MLP in NumPy: dense layers, ReLU, softmax cross-entropy, momentum SGD.

Everything here works on one rank's arrays; nothing knows about MPI. The parameters
are a list of 1-D float32 arrays, one per VGC segment, in the order

    layer0.W, layer0.b, layer1.W, layer1.b, ..., layer{L-1}.W, layer{L-1}.b

where layer l maps ``sizes[l]`` inputs to ``sizes[l+1]`` outputs, ``W`` is stored row
major as float32[in, out] (y = x W + b) and ``b`` as float32[out].

The arithmetic is docs/demo.md "The step", steps 3-7, with its numbers. Every matrix
product, ordered sum, ``exp`` and ``log`` goes through a *products* namespace
(:func:`products`):

* ``"ordered"`` (the default): Numba kernels of the fixed-order primitives of
  :mod:`vgc_ref.portable` (``matmul``, ``matmul_tn``, ``matmul_nt``, ``column_sums``,
  ``row_sums``, ``exp32``, ``log32``): the products of :mod:`vgc_ref.backends.numba_cpu`
  (register-tiled on large layers), the rest of :mod:`vgc_ref.backends.numba_portable`;
  the same bits on every machine, thread count and NumPy version;
* ``"blas"``: NumPy's ``@``, ``sum``, ``exp`` and ``log``; faster on large layers, but the
  rounding depends on the BLAS kernel and the CPU, so its traces are machine-specific.
  It is dtype-generic, which the finite-difference test uses (float64).

Backward pass, for the mean loss over the B samples of the local batch
(L = (1/B) sum_z l_z):

3. forward: y = mm(h_l, W_l) (+) b_l; h_{l+1} = y if y > 0 else +0.0
4. softmax: t = z (-) max z; e = exp32(t); T = rowsum(e); p = e (/) T; loss = log32(T) (-) t[c_b]
5. D_{L-1} = (p (-) onehot(y)) (/) B                   -- dL/dlogits, carries 1/B
   D_{l-1} = mm(D_l, W_l^T) where h_l > 0, else +0.0   -- ReLU
6. g_W = mm(h_l^T, D_l),  g_b = colsum(D_l)                     -- :func:`weight_grads`
7. s_W = mm((h_l*h_l)^T, D_l*D_l),  s_b = colsum(D_l*D_l)       -- :func:`variance_terms`

Steps 6 and 7 are :func:`vgc_ref.dense_grad_var`'s fixed-order computation, operation
for operation, so they give the same bits; they are split here only to time the variance
term (step 7) on its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np

from mpi_demo import rng
from mpi_demo.config import PRODUCTS
from mpi_demo.data import INIT_STREAM


def _blas_namespace() -> SimpleNamespace:
    """NumPy's own products and elementwise functions under the portable primitives' names."""
    return SimpleNamespace(
        name="blas",
        matmul=lambda a, b: a @ b,
        matmul_tn=lambda a, b: a.T @ b,
        matmul_nt=lambda a, b: a @ b.T,
        column_sums=lambda a: a.sum(axis=0),
        row_sums=lambda a: a.sum(axis=1),
        exp32=np.exp,
        log32=np.log,
    )


def products(name: str = "ordered"):
    """The namespace of matrix products, ordered sums, exp and log for ``--products name``.

    ``"ordered"``: the fixed-order kernels (portable bits): products of
    :mod:`vgc_ref.backends.numba_cpu`, sums, exp and log of :mod:`vgc_ref.backends.numba_portable`;
    ``"blas"`` is NumPy's ``@``, ``sum``, ``exp`` and ``log`` (machine-specific bits).
    """
    if name == "ordered":
        from vgc_ref.backends import numba_cpu, numba_portable

        return SimpleNamespace(
            name="ordered",
            matmul=numba_cpu.matmul,
            matmul_tn=numba_cpu.matmul_tn,
            matmul_nt=numba_cpu.matmul_nt,
            column_sums=numba_portable.column_sums,
            row_sums=numba_portable.row_sums,
            exp32=numba_portable.exp32,
            log32=numba_portable.log32,
        )
    if name == "blas":
        return _blas_namespace()
    raise ValueError(f"products {name!r}: must be one of {', '.join(PRODUCTS)}")


def segment_layout(sizes: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every segment, in segment order."""
    layout = []
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layout.append((f"layer{layer}.W", (n_in, n_out)))
        layout.append((f"layer{layer}.b", (n_out,)))
    return layout


def segment_sizes(sizes: Sequence[int]) -> list[int]:
    """n of every segment, in segment order."""
    return [int(np.prod(shape)) for _, shape in segment_layout(sizes)]


def is_weight(sizes: Sequence[int]) -> list[bool]:
    """Whether each segment is a weight matrix (weight decay applies) or a bias (it does not)."""
    return [name.endswith(".W") for name, _ in segment_layout(sizes)]


def init_params(sizes: Sequence[int], seed: int) -> list[np.ndarray]:
    """He-normal weights and zero biases (docs/demo.md "Initial parameters").

    ``W[i, j] = float32(normal(key(seed, 1, l), out*i + j) * sqrt(2.0 / in))`` for layer l,
    with the generator's Irwin-Hall normal (:mod:`mpi_demo.rng`); ``b = +0.0``.
    """
    params = []
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        params.append(rng.he_normal32(rng.key(seed, INIT_STREAM, layer), n_in, n_out))
        params.append(np.zeros(n_out, np.float32))
    return params


def _layers(params: Sequence[np.ndarray], sizes: Sequence[int]):
    """(W, b) per layer, W a 2-D view of its segment."""
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        yield params[2 * layer].reshape(n_in, n_out), params[2 * layer + 1]


def _relu_mask(values: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``values[b, j] if h[b, j] > 0 else +0.0`` (a new array; never -0.0 from a product)."""
    return np.where(h > 0, values, values.dtype.type(0.0))


def forward(params: Sequence[np.ndarray], sizes: Sequence[int], x: np.ndarray, ops=None):
    """Step 3: inputs of every layer and the logits.

    Returns
    -------
    xs : list of arrays
        xs[l] is layer l's input, float[B, sizes[l]] (xs[0] is x itself).
    logits : array
        float[B, sizes[-1]].
    """
    ops = ops if ops is not None else products()
    xs = [x]
    h = x
    layers = list(_layers(params, sizes))
    for layer, (w, b) in enumerate(layers):
        y = ops.matmul(h, w)
        y = y + b  # one rounded addition per element
        if layer + 1 < len(layers):
            h = _relu_mask(y, y)  # y if y > 0 else +0.0
            xs.append(h)
        else:
            return xs, y
    raise ValueError("sizes must name at least one layer")


def softmax_xent(logits: np.ndarray, y: np.ndarray, ops=None) -> tuple[np.ndarray, np.ndarray]:
    """Step 4: per-sample cross-entropy loss float[B] and softmax probabilities float[B, C].

    ``t = z (-) max z`` (the max is exact), ``e = exp32(t)``, ``T = rowsum(e)`` (ordered),
    ``p = e (/) T``, ``loss = log32(T) (-) t[label]``.
    """
    ops = ops if ops is not None else products()
    t = logits - logits.max(axis=1, keepdims=True)
    e = ops.exp32(t.ravel()).reshape(t.shape)
    total = ops.row_sums(e)  # float[B]
    probs = e / total[:, None]
    rows = np.arange(logits.shape[0])
    loss = ops.log32(total) - t[rows, y]
    return loss, probs


def backward(
    params: Sequence[np.ndarray],
    sizes: Sequence[int],
    xs: Sequence[np.ndarray],
    probs: np.ndarray,
    y: np.ndarray,
    ops=None,
) -> list[np.ndarray]:
    """Step 5: D_l = dL/dy_l of the mean loss for every layer l.

    ``D[b, c] = (p[b, c] (-) 1) (/) float(B)`` in the label column, ``p[b, c] (/) float(B)``
    elsewhere; below, ``D_{l-1} = mm(D_l, W_l^T)`` where ``h_l > 0``, else +0.0.
    """
    ops = ops if ops is not None else products()
    batch = probs.shape[0]
    one, scale = probs.dtype.type(1.0), probs.dtype.type(batch)
    rows = np.arange(batch)
    d = probs.copy()
    d[rows, y] = probs[rows, y] - one
    d = d / scale
    deltas = [d]
    layers = list(_layers(params, sizes))
    for layer in range(len(layers) - 1, 0, -1):
        w, _ = layers[layer]
        d = _relu_mask(ops.matmul_nt(d, w), xs[layer])
        deltas.append(d)
    deltas.reverse()
    return deltas


def weight_grads(xs: Sequence[np.ndarray], deltas: Sequence[np.ndarray], ops=None) -> list[np.ndarray]:
    """Step 6, g of every segment: ``g_W = mm(h^T, D)``, ``g_b = colsum(D)``, flattened."""
    ops = ops if ops is not None else products()
    grads = []
    for x, d in zip(xs, deltas):
        grads += [ops.matmul_tn(x, d).ravel(), ops.column_sums(d)]
    return grads


def variance_terms(xs: Sequence[np.ndarray], deltas: Sequence[np.ndarray], ops=None) -> list[np.ndarray]:
    """Step 7, s of every segment: ``s_W = mm((h*h)^T, D*D)``, ``s_b = colsum(D*D)``, flattened."""
    ops = ops if ops is not None else products()
    terms = []
    for x, d in zip(xs, deltas):
        d2 = d * d
        terms += [ops.matmul_tn(x * x, d2).ravel(), ops.column_sums(d2)]
    return terms


def loss_sum(loss: np.ndarray) -> float:
    """Step 12: ``0.0 + loss_0 + loss_1 + ...`` in float64, in sample order (not np.sum's order)."""
    total = 0.0
    for value in loss.tolist():  # float32 -> Python float is exact
        total += value
    return total


def predict(params: Sequence[np.ndarray], sizes: Sequence[int], x: np.ndarray, ops=None) -> np.ndarray:
    """Predicted class of every row of x: the first index of the largest logit, int64[B]."""
    _, logits = forward(params, sizes, x, ops)
    return logits.argmax(axis=1)  # NumPy's argmax returns the first maximum


def momentum_sgd(
    params: Sequence[np.ndarray],
    momentum: Sequence[np.ndarray],
    g_hat: Sequence[np.ndarray],
    decay: Sequence[bool],
    lr: np.float32,
    mu: np.float32,
    weight_decay: np.float32,
) -> None:
    """One update of every segment, in place, float32, the same on every rank.

    Per element, each operation rounded to float32 on its own (no fused multiply-add)::

        d <- g_hat + weight_decay * w       (weight segments; d <- g_hat for biases)
        m <- mu * m + d
        w <- w - lr * m
    """
    for w, m, g, decays in zip(params, momentum, g_hat, decay):
        d = g + weight_decay * w if decays else g
        np.multiply(m, mu, out=m)
        np.add(m, d, out=m)
        np.subtract(w, lr * m, out=w)
