"""Bug: g_hat = acc * (1 / P) instead of the one rounded division acc / P."""

from wrong_impls._base import (
    decode_message,
    dense_grad_var,
    encode_message,
    make_aggregate,
    strom_step,
    vgc_step,
)

decode_accumulate = make_aggregate(reciprocal=True)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
