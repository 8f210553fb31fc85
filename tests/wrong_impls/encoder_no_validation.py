"""Bug: the encoder writes whatever packets it is given, valid or not."""

import zlib

import numpy as np

from vgc_ref import encoding
from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    strom_step,
    vgc_step,
)


def encode_message(packets):
    body = encoding.HEADER.pack(encoding.MAGIC, encoding.VERSION, 0, len(packets))
    for p in packets:
        words = np.asarray(p.words).astype("<u4").reshape(-1)
        body += encoding.SEGMENT_HEADER.pack(
            int(p.segment_id) & 0xFFFFFFFF,
            int(p.n) & 0xFFFFFFFF,
            int(p.codec),
            bytes(3),
            int(p.param) & 0xFFFFFFFF,
            words.size,
        )
        body += words.tobytes()
    return body + zlib.crc32(body).to_bytes(4, "little")


__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
