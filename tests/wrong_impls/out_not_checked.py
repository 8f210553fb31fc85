"""Bug: decode_accumulate writes into ``out`` without checking it first (length,
dtype, writeability), so a bad ``out`` gives numpy's error, or none."""

from wrong_impls._base import (
    decode_message,
    dense_grad_var,
    encode_message,
    make_aggregate,
    strom_step,
    vgc_step,
)

decode_accumulate = make_aggregate(check_out=False)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
