"""Bug: the decoder checks indices against n but not that they strictly increase."""

import numpy as np

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
    return _reference_rule(np.sort(index), words, n)  # sorted first: order is never checked


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
