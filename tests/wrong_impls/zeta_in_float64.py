"""Bug: held elements decay as float32(zeta * v) with the float64 zeta."""

import numpy as np

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_vgc_step,
    strom_step,
)

vgc_step = make_vgc_step(decay=lambda params, v: (np.float64(params.zeta) * v).astype(np.float32))

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
