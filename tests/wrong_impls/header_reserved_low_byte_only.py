"""Bug: the decoder checks only the low byte of the header's reserved u16
(bits 8..15 are never looked at)."""

import zlib

from vgc_ref.encoding import decode_message as _decode_message
from wrong_impls._base import (
    dense_grad_var,
    encode_message,
    make_aggregate,
    strom_step,
    vgc_step,
)


def decode_message(data):
    buf = bytearray(data)
    if len(buf) >= 12 and buf[7]:
        crc_ok = zlib.crc32(bytes(buf[:-4])) == int.from_bytes(buf[-4:], "little")
        buf[7] = 0
        if crc_ok:
            buf[-4:] = zlib.crc32(bytes(buf[:-4])).to_bytes(4, "little")
    return _decode_message(bytes(buf))


decode_accumulate = make_aggregate(decode_message)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
