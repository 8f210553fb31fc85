"""Bug: the criterion compares r*r >= alpha*v instead of the strict r*r > alpha*v."""

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_vgc_step,
    strom_step,
)

vgc_step = make_vgc_step(strict=False)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
