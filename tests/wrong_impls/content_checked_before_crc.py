"""Bug: the decoder checks each segment's content before the CRC, so a
message with both a content error and a bad CRC is reported at the content error."""

from vgc_ref import encoding
from wrong_impls._base import (
    dense_grad_var,
    encode_message,
    make_aggregate,
    strom_step,
    vgc_step,
)


def decode_message(data):
    buf = bytes(data)
    segments = encoding._read_frame(buf)
    seen = {}
    packets = [encoding._check_segment(buf, segment, seen) for segment in segments]
    encoding._check_crc(buf)
    return packets


decode_accumulate = make_aggregate(decode_message)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
