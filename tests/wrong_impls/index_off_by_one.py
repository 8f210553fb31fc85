"""Bug: the decoder accepts an index equal to n (it checks index > n instead of index >= n)."""

from vgc_ref import encoding
from wrong_impls._base import (
    dense_grad_var,
    encode_message,
    make_aggregate,
    make_decoder,
    strom_step,
    vgc_step,
)

_reference_rule = encoding._index_problem


def _index_problem(index, words, n):
    return _reference_rule(index, words, n + 1)  # off by one: rejects only index > n


decode_message = make_decoder(_index_problem=_index_problem)
decode_accumulate = make_aggregate(decode_message)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
