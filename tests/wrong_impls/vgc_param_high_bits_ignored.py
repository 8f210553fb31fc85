"""Bug: the decoder checks VGC_Q4 param bits 15..8 but not 31..16."""

from wrong_impls._base import (
    dense_grad_var,
    encode_message,
    make_aggregate,
    make_blind_decoder,
    strom_step,
    vgc_step,
)


def _clear(buf, segments):
    for s in segments:
        if s.codec == 1:
            buf[s.offset + 14 : s.offset + 16] = b"\0\0"


decode_message = make_blind_decoder(_clear)
decode_accumulate = make_aggregate(decode_message)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
