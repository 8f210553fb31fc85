"""Bug: the exact form's sum over samples as a tree (halves first, as a GPU reduction
would), instead of adding the samples' squares in increasing order from +0.0
(docs/algorithm.md section 2.1)."""

import numpy as np

import vgc_ref
from vgc_ref import portable
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
    if form == "approx":
        return want
    squares = np.stack([portable.matmul_tn(patches[i], delta[i]) for i in range(patches.shape[0])])
    return want[0], _tree(squares * squares), want[2], want[3]


def _tree(a):
    if len(a) == 1:
        return a[0]
    mid = len(a) // 2
    return _tree(a[:mid]) + _tree(a[mid:])
