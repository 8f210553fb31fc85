"""Bug: the decoder never checks the CRC-32."""

from wrong_impls._base import (
    dense_grad_var,
    encode_message,
    make_aggregate,
    make_decoder,
    strom_step,
    vgc_step,
)

decode_message = make_decoder(_check_crc=lambda buf: None)
decode_accumulate = make_aggregate(decode_message)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
