"""Bug: Strom's step sends |r| > tau instead of |r| >= tau."""

from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    make_strom_step,
    vgc_step,
)

strom_step = make_strom_step(inclusive=False)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
