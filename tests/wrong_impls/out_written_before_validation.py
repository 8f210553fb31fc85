"""Bug: decode_accumulate decodes rank by rank and adds into ``out`` as it goes, so a
malformed message from a later rank leaves ``out`` half written."""

from wrong_impls._base import (
    decode_message,
    dense_grad_var,
    encode_message,
    make_aggregate,
    strom_step,
    vgc_step,
)

decode_accumulate = make_aggregate(write_early=True)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
