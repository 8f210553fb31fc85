"""Bug: dense_grad_var squares x in place for the variance product,
leaving the caller's x modified."""

import numpy as np

from vgc_ref.variance import dense_grad_var as _dense_grad_var
from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    encode_message,
    strom_step,
    vgc_step,
)


def dense_grad_var(x, delta):
    result = _dense_grad_var(x, delta)
    if isinstance(x, np.ndarray) and x.dtype == np.float32:
        np.multiply(x, x, out=x)
    return result


__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
