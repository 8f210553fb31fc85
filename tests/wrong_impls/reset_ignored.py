"""Bug: residual mode "reset" behaves like "feedback" (r - q kept instead of r = 0)."""

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_vgc_step,
    strom_step,
)

vgc_step = make_vgc_step(honour_reset=False)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
