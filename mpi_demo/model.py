"""A small MLP in NumPy: dense layers, ReLU, softmax cross-entropy, momentum SGD.

Everything here works on one rank's arrays; nothing knows about MPI. The parameters
are a list of 1-D float32 arrays, one per VGC segment, in the order

    layer0.W, layer0.b, layer1.W, layer1.b, ..., layer{L-1}.W, layer{L-1}.b

where layer l maps ``sizes[l]`` inputs to ``sizes[l+1]`` outputs, ``W`` is stored row
major as float32[in, out] (y = x W + b) and ``b`` as float32[out]. The functions are
dtype-generic (the finite-difference test runs them in float64); training uses float32.

Backward pass, for the mean loss over the B samples of the local batch
(L = (1/B) sum_z l_z):

1. D_{L-1} = (softmax(logits) - onehot(y)) / B           -- dL/dlogits, carries 1/B
2. D_{l-1} = (D_l W_l^T) * [x_l > 0]                     -- ReLU: x_l = relu(y_{l-1})
3. g_W = x_l^T D_l,  g_b = sum_z D_l[z]                   -- :func:`weight_grads`
4. s_W = (x_l*x_l)^T (D_l*D_l),  s_b = sum_z D_l[z]^2     -- :func:`variance_terms`

Steps 3 and 4 are the products of :func:`vgc_ref.dense_grad_var`, operation for
operation, so they give the same bits; they are split here only to time the variance
term (step 4) on its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from mpi_demo.data import INIT_STREAM
from vgc_ref.variance import dense_grad, dense_var


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
    """He-normal weights (std sqrt(2 / in), drawn in float64, rounded to float32), zero biases."""
    rng = np.random.default_rng([seed, INIT_STREAM])
    params = []
    for n_in, n_out in itertools.pairwise(sizes):
        w = rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, n_out)).astype(np.float32)
        params.append(w.ravel())
        params.append(np.zeros(n_out, np.float32))
    return params


def _layers(params: Sequence[np.ndarray], sizes: Sequence[int]):
    """(W, b) per layer, W a 2-D view of its segment."""
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        yield params[2 * layer].reshape(n_in, n_out), params[2 * layer + 1]


def forward(params: Sequence[np.ndarray], sizes: Sequence[int], x: np.ndarray):
    """Inputs of every layer and the logits.

    Returns
    -------
    xs : list of arrays
        xs[l] is layer l's input, float[B, sizes[l]] (xs[0] is x itself).
    logits : array
        float[B, sizes[-1]].
    """
    xs = [x]
    h = x
    layers = list(_layers(params, sizes))
    for layer, (w, b) in enumerate(layers):
        y = h @ w + b
        if layer + 1 < len(layers):
            h = np.maximum(y, 0)  # ReLU
            xs.append(h)
        else:
            return xs, y
    raise ValueError("sizes must name at least one layer")


def softmax_xent(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample cross-entropy loss float[B] and softmax probabilities float[B, C]."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    probs = e / total
    rows = np.arange(logits.shape[0])
    loss = np.log(total[:, 0]) - z[rows, y]
    return loss, probs


def backward(
    params: Sequence[np.ndarray],
    sizes: Sequence[int],
    xs: Sequence[np.ndarray],
    probs: np.ndarray,
    y: np.ndarray,
) -> list[np.ndarray]:
    """D_l = dL/dy_l of the mean loss for every layer l (steps 1-2 of the module docstring)."""
    batch = probs.shape[0]
    d = probs.copy()
    d[np.arange(batch), y] -= 1
    d /= d.dtype.type(batch)
    deltas = [d]
    layers = list(_layers(params, sizes))
    for layer in range(len(layers) - 1, 0, -1):
        w, _ = layers[layer]
        d = (d @ w.T) * (xs[layer] > 0)
        deltas.append(d)
    deltas.reverse()
    return deltas


def weight_grads(xs: Sequence[np.ndarray], deltas: Sequence[np.ndarray]) -> list[np.ndarray]:
    """g of every segment (step 3): vgc_ref.variance.dense_grad per layer, flattened."""
    grads = []
    for x, d in zip(xs, deltas):
        g_w, g_b = dense_grad(x, d)
        grads += [g_w.ravel(), g_b]
    return grads


def variance_terms(xs: Sequence[np.ndarray], deltas: Sequence[np.ndarray]) -> list[np.ndarray]:
    """s of every segment (step 4): vgc_ref.variance.dense_var per layer, flattened."""
    terms = []
    for x, d in zip(xs, deltas):
        s_w, s_b = dense_var(x, d)
        terms += [s_w.ravel(), s_b]
    return terms


def predict(params: Sequence[np.ndarray], sizes: Sequence[int], x: np.ndarray) -> np.ndarray:
    """Predicted class of every row of x: int64[B]."""
    _, logits = forward(params, sizes, x)
    return logits.argmax(axis=1)


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
