"""Bug: both products of the criterion are computed in float64 (r*r and
alpha32*v exact), not rounded to float32."""

import numpy as np

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_vgc_step,
    strom_step,
)


def _f64(r, v, params):
    r64 = r.astype(np.float64)
    return r64 * r64 > np.float64(params.alpha32) * v.astype(np.float64)


vgc_step = make_vgc_step(criterion=_f64)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
