"""Bug: an off-by-one in the 4-bit code: elements with k = 16 are sent (k spills into the sign bit)."""

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_vgc_step,
    strom_step,
)

vgc_step = make_vgc_step(max_k=16)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
