"""Bug: the encoder writes the packed words big-endian (the header fields are right)."""

import struct
import zlib

from vgc_ref.encoding import validate_packet
from wrong_impls._base import decode_accumulate, decode_message, dense_grad_var, strom_step, vgc_step


def encode_message(packets):
    packets = list(packets)
    for p in packets:
        validate_packet(p)
    parts = [struct.pack("<4sHHI", b"VGCM", 1, 0, len(packets))]
    for p in packets:
        parts.append(struct.pack("<IIB3sII", p.segment_id, p.n, int(p.codec), bytes(3), p.param, p.count))
        parts.append(p.words.astype(">u4").tobytes())  # should be "<u4"
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
