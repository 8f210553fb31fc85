"""Bug: the VGC word's index field is packed with 26 bits, not 27, so
indices from 2^26 on lose their top bit (seen only with n > 2^26)."""

import numpy as np

from vgc_ref.packet import Packet
from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    strom_step,
)
from wrong_impls._base import vgc_step as _vgc_step


def vgc_step(state, g, s, params):
    p = _vgc_step(state, g, s, params)
    words = ((p.words >> np.uint32(5)) & np.uint32((1 << 26) - 1)) << np.uint32(5) | (p.words & np.uint32(31))
    return Packet(p.segment_id, p.n, p.codec, p.param, words)


__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
