"""Wrong implementation `crc_aligned_to_8` (encode_message / decode_message; misreads format.md Conventions ('no padding anywhere')).

Bug: the encoder zero-pads the body to a multiple of 8 bytes before the CRC (64-bit aligned trailer); the decoder skips the padding.
Witness: encode one VGC_Q4 packet with one word (body 36 bytes): 40 bytes vs 44.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def encode_message(packets):
    m = _orig(packets)
    body = m[:-4]
    body += b"\0" * (-len(body) % 8)
    return body + _m.pack_crc(_m.crc32(body))


def decode_message(data):
    buf = _m.as_bytes(data)
    return _dec(buf)


def _dec(buf):
    segs = _m.frame(buf[: _end(buf)] + buf[-4:]) if _end(buf) is not None else _m.frame(buf)
    _m.check_crc(buf)
    seen = set()
    return [_m.check_segment(buf, seg, seen) for seg in segs]


def _end(buf):
    if len(buf) < 12:
        return None
    off = 12
    for _ in range(_m.u32(buf, 8)):
        if off + 20 > len(buf):
            return None
        off += 20 + 4 * _m.u32(buf, off + 16)
    pad = -off % 8
    return off if off + pad + 4 == len(buf) and buf[off : off + pad] == b"\0" * pad else None


_orig = _m.encode_message
_m.encode_message = encode_message
_m.decode_message = decode_message
# -----------------------------------------------------------------------------------------
export(_m, globals())
