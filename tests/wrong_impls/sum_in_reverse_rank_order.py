"""Bug: the aggregation adds the ranks' values from rank P-1 down to rank 0."""

from wrong_impls._base import (
    decode_message,
    dense_grad_var,
    encode_message,
    make_aggregate,
    strom_step,
    vgc_step,
)

decode_accumulate = make_aggregate(reverse=True)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
