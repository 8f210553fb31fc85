"""Bug: alpha is used as the float64 the user gave, not rounded to float32 once."""

import numpy as np

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_vgc_step,
    strom_step,
)


def _alpha64(r, v, params):
    return (r * r).astype(np.float64) > np.float64(params.alpha) * v.astype(np.float64)


vgc_step = make_vgc_step(criterion=_alpha64)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
