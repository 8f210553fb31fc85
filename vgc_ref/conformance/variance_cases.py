"""Hand-picked dense layers where one rule of the fixed order decides the result.

docs/algorithm.md section 2: every product and every addition rounded to float32 on its
own (no FMA), the accumulator starting at +0.0, the samples added in increasing order.
Each function returns (x: float32[B, in], delta: float32[B, out]); the comment says what
a computation that breaks the rule gets wrong. Used by the conformance property
``test_dense_grad_var_equals_reference_on_edge_cases`` and by the golden vectors
(``dense_*`` cases of ``python -m vgc_ref.vectors``); tests/test_portable.py checks that
each layer does tell the wrong computation apart.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def normal(rng: np.random.Generator, shape) -> np.ndarray:
    """Approximately standard normal float64[shape] that are the same bits on every machine.

    The Irwin-Hall sum of 12 uniforms minus 6, added in index order. ``rng.random`` is a
    53-bit integer times 2^-53 and every addition is one IEEE operation, so no host library
    enters; NumPy's own ``normal`` calls libm's log and exp in its ziggurat's tail, and
    inputs of golden vectors or table cases must not depend on the host's libm.
    """
    u = rng.random((12, *np.shape(np.empty(shape, np.bool_))))
    total = u[0]
    for i in range(1, 12):
        total = total + u[i]
    return total - 6.0


def _no_fma():
    # g_W = +0.0 (+) -(1+2^-11) (+) fl((1+2^-12)^2) = -(1+2^-11) + (1+2^-11) = 0, because
    # (1+2^-12)^2 = 1+2^-11+2^-24 rounds (a tie, to even) before it is added. With a fused
    # multiply-add the 2^-24 survives. Four columns, so that a BLAS takes its gemm path.
    x = np.tile(np.array([[-(1.0 + 2.0**-11)], [1.0 + 2.0**-12]], F32), (1, 4))
    delta = np.tile(np.array([[1.0], [1.0 + 2.0**-12]], F32), (1, 4))
    return x, delta


def _sequential(first_big: bool):
    # D = [2^24, 1, 1]: in order, 2^24 + 1 ties back to 2^24 twice -> 2^24; summed pairwise
    # or from the end, 1 + 1 = 2 first -> 2^24 + 2. D = [1, 1, 2^24] is the reverse.
    col = [2.0**24, 1.0, 1.0] if first_big else [1.0, 1.0, 2.0**24]
    return np.ones((3, 2), F32), np.array([col, col[::-1]], F32).T.copy()


def _long_batch(batch=520, width=1):
    # 2^24 first, then 519 ones: in order, every 1 is lost (-> 2^24). A sum in blocks of
    # up to 512 samples (BLAS kernels block it), several accumulators or a tree keep some.
    x = np.ones((batch, width), F32)
    delta = np.ones((batch, width), F32)
    delta[0] = 2.0**24
    return x, delta


def _blas_order():
    # _no_fma's two samples in column 0, _long_batch's in column 1: a BLAS product differs
    # from the fixed order in one of them whether it fuses (most CPU kernels) or blocks.
    x, delta = _long_batch(width=2)
    fx, fd = _no_fma()
    x[:, 0], delta[:, 0] = 0.0, 0.0
    x[:2, 0], delta[:2, 0] = fx[:, 0], fd[:, 0]
    return x, delta


def _squares_rounded_first():
    # s_W = (x (x) x) (x) (D (x) D), each square rounded first; (x*D)^2 differs here.
    x = np.array([[float.fromhex("0x1.000f24p+0")]], F32)
    delta = np.array([[float.fromhex("0x1.00106p+0")]], F32)
    return x, delta


def _signed_zeros():
    # The accumulator starts at +0.0: -0.0 products and -0.0 values sum to +0.0.
    x = np.array([[-0.0, 1.0], [0.0, -0.0]], F32)
    delta = np.array([[1.0, -0.0], [-1.0, -0.0]], F32)
    return x, delta


def _subnormals():
    # Products and sums in the subnormal range are kept (no flush to zero): 2^-60 * 2^-70
    # = 2^-130; the squares 2^-120 * 2^-140 underflow to +0.0 or round to 2^-149 steps.
    x = np.array([[2.0**-60, 2.0**-74], [2.0**-60, 3.0 * 2.0**-75]], F32)
    delta = np.array([[2.0**-70, 2.0**-126], [2.0**-149, -(2.0**-148)]], F32)
    return x, delta


#: Hand-picked layers, each pinning one rule of docs/algorithm.md section 2.
EDGE_LAYERS = {
    "no_fma": _no_fma,
    "sequential_not_pairwise": lambda: _sequential(True),
    "sequential_not_reversed": lambda: _sequential(False),
    "long_batch": _long_batch,
    "blas_order": _blas_order,
    "squares_rounded_first": _squares_rounded_first,
    "signed_zeros": _signed_zeros,
    "subnormals": _subnormals,
}

#: One line per layer: what it pins (the golden vectors' descriptions).
WHY = {
    "no_fma": "each product rounded before it is added: a fused multiply-add gives 2^-24 instead of 0",
    "sequential_not_pairwise": "samples added in order: 2^24 + 1 + 1 stays 2^24 (pairwise: 2^24 + 2)",
    "sequential_not_reversed": "samples added in order: 1 + 1 + 2^24 is 2^24 + 2 (reversed: 2^24)",
    "long_batch": "520 samples added in order: 2^24 then 519 ones stays 2^24 (blocked sums keep some)",
    "blas_order": "no_fma and long_batch side by side: a BLAS product fails one of them",
    "squares_rounded_first": "s_W = (x*x) * (D*D), each square rounded first ((x*D)^2 differs)",
    "signed_zeros": "the accumulator starts at +0.0: -0.0 terms sum to +0.0",
    "subnormals": "subnormal products and sums kept, not flushed to zero",
}


def random_layer(seed: int = 10, batch: int = 64, n_in: int = 12, n_out: int = 10):
    """A layer of ordinary values spread over many magnitudes, some edge values among them."""
    rng = np.random.default_rng(seed)

    def matrix(shape):
        a = (normal(rng, shape) * np.ldexp(1.0, rng.integers(-20, 6, shape))).astype(F32)
        edge = rng.random(shape) < 0.1
        a[edge] = rng.choice(
            np.array([0.0, -0.0, 2.0**-149, 1.0 + 2.0**-12, 2.0**24], F32), size=int(edge.sum())
        )
        return a

    return matrix((batch, n_in)), matrix((batch, n_out))


# --------------------------------------------------------------------------------------
# Convolutions (docs/algorithm.md section 2.1): patches X float32[B, P, K], D float32[B, P, out]
# --------------------------------------------------------------------------------------


def _conv_no_fma():
    # One sample, two positions: G = +0.0 (+) -(1+2^-11) (+) fl((1+2^-12)^2) = 0 in order
    # with each product rounded; an FMA keeps 2^-24 (exact: s = 0 vs 2^-48).
    x, delta = _no_fma()
    return x[None], delta[None]


def _conv_positions_in_order():
    # exact: G_b sums its positions in order: 2^24 + 1 + 1 stays 2^24 (pairwise: 2^24 + 2).
    return np.ones((1, 3, 1), F32), np.array([[[2.0**24], [1.0], [1.0]]], F32)


def _conv_samples_in_order():
    # exact: s sums the samples' squares in order: G = (2^12, 1, 1) gives 2^24 + 1 + 1 = 2^24
    # in order (pairwise 2^24 + 2); approx has the same rows, b-major.
    return np.ones((3, 1, 1), F32), np.array([[[2.0**12]], [[1.0]], [[1.0]]], F32)


def _conv_rows_b_major():
    # approx and g_W: the B*P rows in b-major order, (b0p0, b0p1, b1p0, b1p1) = (2^24, 1,
    # -2^24, 1): ((2^24 + 1) - 2^24) + 1 = 1; p-major gives (2^24 - 2^24) + 1 + 1 = 2.
    delta = np.array([[[2.0**24], [1.0]], [[-(2.0**24)], [1.0]]], F32)
    return np.ones((2, 2, 1), F32), delta


def _conv_long_batch():
    # 260 samples of 2 positions: 2^24 first, then 519 ones: every one is lost in order
    # (rows b-major, from +0.0); blocked or tree sums keep some.
    x = np.ones((260, 2, 1), F32)
    delta = np.ones((260, 2, 1), F32)
    delta[0, 0] = 2.0**24
    return x, delta


def _conv_squares_rounded_first():
    # approx: (x (x) x) (x) (D (x) D), each square rounded first; exact: fl(x D) squared.
    x, delta = _squares_rounded_first()
    return x[None], delta[None]


def _conv_signed_zeros():
    # -0.0 products and G = -0.0 sum to +0.0 from a +0.0 accumulator.
    x, delta = _signed_zeros()
    return x[None], delta[None]


def _conv_subnormals():
    # Subnormal products, sums and squares kept (no flush to zero).
    x, delta = _subnormals()
    return x[None], delta[None]


def _conv_wide():
    # K = 7, out = 5, B = 3, P = 4 of many magnitudes: every loop bound of a kernel's
    # blocking over K and out, with products that round.
    rng = np.random.default_rng(21)
    x = (normal(rng, (3, 4, 7)) * np.ldexp(1.0, rng.integers(-12, 12, (3, 4, 7)))).astype(F32)
    delta = (normal(rng, (3, 4, 5)) * np.ldexp(1.0, rng.integers(-12, 12, (3, 4, 5)))).astype(F32)
    return x, delta


#: Hand-picked convolution layers, each pinning one rule of the fixed order of section 2.1;
#: every layer is checked in both forms.
CONV_EDGE_LAYERS = {
    "no_fma": _conv_no_fma,
    "positions_in_order": _conv_positions_in_order,
    "samples_in_order": _conv_samples_in_order,
    "rows_b_major": _conv_rows_b_major,
    "long_batch": _conv_long_batch,
    "squares_rounded_first": _conv_squares_rounded_first,
    "signed_zeros": _conv_signed_zeros,
    "subnormals": _conv_subnormals,
    "wide": _conv_wide,
}

CONV_WHY = {
    "no_fma": "each product rounded before it is added (an FMA keeps 2^-24)",
    "positions_in_order": "exact: a sample's positions added in order (2^24 + 1 + 1 stays 2^24)",
    "samples_in_order": "exact: the samples' squares added in order (2^24 + 1 + 1 stays 2^24)",
    "rows_b_major": "g_W and approx: the B*P rows added b-major (p-major gives 2 instead of 1)",
    "long_batch": "520 rows added in order from +0.0 (blocked or tree sums keep some ones)",
    "squares_rounded_first": "approx: x*x and D*D rounded before their product; exact: fl(x*D) squared",
    "signed_zeros": "the accumulators start at +0.0: -0.0 terms sum to +0.0",
    "subnormals": "subnormal products, sums and squares kept, not flushed to zero",
    "wide": "K = 7, out = 5: every element of W in its own fixed order",
}


#: Invalid inputs of conv_grad_var, made from valid (patches, delta, form): the reference's
#: InputError and ``name`` (docs/conformance.md, "Which error wins").
BAD_CONVS = {
    "patches_float64": lambda x, d, f: (x.astype(np.float64), d, f),
    "delta_2d": lambda x, d, f: (x, d[0], f),
    "positions_mismatch": lambda x, d, f: (x, d[:, 1:], f),
    "empty_batch": lambda x, d, f: (x[:0], d[:0], f),
    "unknown_form": lambda x, d, f: (x, d, "cheap"),
    "float64_and_unknown_form": lambda x, d, f: (x.astype(np.float64), d, "cheap"),
    "patches_list": lambda x, d, f: (x.tolist(), d, f),
}
