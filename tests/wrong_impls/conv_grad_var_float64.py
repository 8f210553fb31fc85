"""Bug: the convolution's g and s summed in float64 and rounded to float32 once, as a
port that accumulates in double would (docs/algorithm.md section 2.1 fixes float32 sums,
each addition rounded)."""

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
    x, d = patches.astype(np.float64), delta.astype(np.float64)
    g_w, g_b = np.einsum("bpk,bpo->ko", x, d), d.sum(axis=(0, 1))
    if form == "exact":
        s_w = (np.einsum("bpk,bpo->bko", x, d) ** 2).sum(axis=0)
        s_b = (d.sum(axis=1) ** 2).sum(axis=0)
    else:
        s_w, s_b = np.einsum("bpk,bpo->ko", x * x, d * d), (d * d).sum(axis=(0, 1))
    return tuple(a.astype(np.float32) for a in (g_w, s_w, g_b, s_b))
