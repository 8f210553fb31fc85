"""Bug: the criterion is contracted the other way, fma(alpha, v, -(r * r)) < 0:
alpha*v is not rounded (emulated exactly in float64)."""

import numpy as np

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_vgc_step,
    strom_step,
)


def _fma(r, v, params):
    return np.float64(params.alpha32) * v.astype(np.float64) - (r * r).astype(np.float64) < 0


vgc_step = make_vgc_step(criterion=_fma)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
