"""Bug: the approximate form as the sum of squared per-position products, fl(fl(x*D)^2),
instead of fl(fl(x*x) * fl(D*D)) (docs/algorithm.md section 2.1: the squares of X and of
D, each rounded, then their product); equal in real arithmetic, not in float32."""

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
    want = vgc_ref.conv_grad_var(patches, delta, form)
    if form == "exact":
        return want
    b, p, k = patches.shape
    x, d = patches.reshape(b * p, k), delta.reshape(b * p, -1)
    s_w = np.zeros((k, d.shape[1]), np.float32)
    for row in range(b * p):  # rows in order, as the reference
        a = x[row][:, None] * d[row][None, :]
        s_w = s_w + a * a
    return want[0], s_w, want[2], want[3]
