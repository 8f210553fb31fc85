"""Bug: the accumulator starts as rank 0's values instead of +0.0, so -0.0 survives."""

from wrong_impls._base import (
    decode_message,
    dense_grad_var,
    encode_message,
    make_aggregate,
    strom_step,
    vgc_step,
)

decode_accumulate = make_aggregate(start_from_first_rank=True)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
