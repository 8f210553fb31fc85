"""Bug: Strom subtracts the float64 tau: r = float32(r - tau), not r - tau32."""

import numpy as np

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_strom_step,
    vgc_step,
)


def _subtract(r, sign, params):
    tau = np.where(sign == 1, -np.float64(params.tau), np.float64(params.tau))
    return (r.astype(np.float64) - tau).astype(np.float32)


strom_step = make_strom_step(subtract=_subtract)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
