"""Bug: the B*P rows of g_W and of the approximate form added position-major (all
samples' position 0, then position 1, ...) instead of b-major as docs/algorithm.md
section 2.1 fixes (``X.reshape(B*P, K)``, rows b-major, then p)."""

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
    want = vgc_ref.conv_grad_var(patches, delta, form)  # the reference's errors and s
    x, d = np.ascontiguousarray(patches.transpose(1, 0, 2)), np.ascontiguousarray(delta.transpose(1, 0, 2))
    g_w, g_b = vgc_ref.variance.conv_grad(x, d)  # the same sums over transposed rows
    if form == "approx":
        return g_w, vgc_ref.variance.conv_var(x, d, "approx")[0], g_b, want[3]
    return g_w, want[1], g_b, want[3]
