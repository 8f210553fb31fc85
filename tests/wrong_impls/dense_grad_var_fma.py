"""Bug: each product of g_W and s_W is added as by a fused multiply-add: the exact product
(float64: the product of two float32 is exact there) is added to the accumulator, and
only the sum is rounded to float32, instead of the product being rounded first. The
samples are still added in order from +0.0; g_b and s_b are the reference's."""

import numpy as np

from vgc_ref.variance import dense_grad_var as _dense_grad_var
from wrong_impls._base import decode_accumulate, decode_message, encode_message, strom_step, vgc_step


def _fma_matmul_tn(a, b):
    out = np.zeros((a.shape[1], b.shape[1]), np.float32)
    for k in range(a.shape[0]):
        exact = a[k, :, None].astype(np.float64) * b[k].astype(np.float64)
        out = (out.astype(np.float64) + exact).astype(np.float32)  # the product never rounded on its own
    return out


def dense_grad_var(x, delta):
    _, _, g_b, s_b = _dense_grad_var(x, delta)  # the reference's checks and sums
    return _fma_matmul_tn(x, delta), _fma_matmul_tn(x * x, delta * delta), g_b, s_b


__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
