"""Bug: the criterion is contracted to fma(r, r, -(alpha * v)) > 0, as nvcc and
C compilers do by default: r*r is not rounded before the comparison (emulated exactly in
float64, where r*r of a float32 is exact)."""

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
    r64 = r.astype(np.float64)
    return r64 * r64 - (params.alpha32 * v).astype(np.float64) > 0


vgc_step = make_vgc_step(criterion=_fma)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
