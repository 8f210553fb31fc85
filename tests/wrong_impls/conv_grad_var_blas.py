"""Bug: the convolution's products by BLAS (``X.T @ D`` over the B*P rows, and per
sample for the exact form), which sums in an order of its own (fused multiply-adds,
blocks) instead of the fixed order of docs/algorithm.md section 2.1."""

import numpy as np

import vgc_ref
from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    strom_step,
    vgc_step,
)

__all__ = [
    "conv_grad_var",
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]


def conv_grad_var(patches, delta, form="exact"):
    vgc_ref.conv_grad_var(patches, delta, form)  # the reference's input errors
    b, p, k = patches.shape
    x, d = patches.reshape(b * p, k), delta.reshape(b * p, -1)
    g_w, g_b = x.T @ d, vgc_ref.conv_grad_var(patches, delta, form)[2]
    if form == "exact":
        s_w = np.zeros_like(g_w)
        for i in range(b):
            g = patches[i].T @ delta[i]
            s_w = s_w + g * g
    else:
        s_w = (x * x).T @ (d * d)
    return g_w, s_w, g_b, vgc_ref.conv_grad_var(patches, delta, form)[3]
