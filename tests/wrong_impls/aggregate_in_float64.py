"""Bug: aggregation accumulates the P ranks in float64 and rounds once at the end."""

from wrong_impls._base import (
    decode_message,
    dense_grad_var,
    encode_message,
    make_aggregate,
    strom_step,
    vgc_step,
)

decode_accumulate = make_aggregate(float64=True)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
