"""Bug: the decoder compares each segment id with the previous segment's
only, so a repeat two or more segments apart is accepted."""

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
    encoding._check_crc(buf)
    packets, previous = [], {}
    for segment in segments:
        seen = dict(previous)
        packets.append(encoding._check_segment(buf, segment, seen))
        previous = {segment.segment_id: segment.offset}
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
