"""Bug: the power-of-two rounding uses mantissa 0x3504F4, one above float32(sqrt 2)'s 0x3504F3."""

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_vgc_step,
    strom_step,
)

vgc_step = make_vgc_step(sqrt2_mantissa=0x3504F4)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
