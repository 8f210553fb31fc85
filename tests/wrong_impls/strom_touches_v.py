"""Bug: Strom zeroes v of the elements it sends (as the VGC step does)."""

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_strom_step,
    vgc_step,
)

strom_step = make_strom_step(touch_v=True)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
