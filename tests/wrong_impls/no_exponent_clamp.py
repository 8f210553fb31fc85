"""Bug: the rounded exponent is not clamped to 254, so values near float32 max get e = 255."""

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_vgc_step,
    strom_step,
)

vgc_step = make_vgc_step(max_exponent=255)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
