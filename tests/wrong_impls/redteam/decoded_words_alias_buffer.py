"""Wrong implementation `decoded_words_alias_buffer` (decode_message; misreads format.md 'a failed decode has no other effect' / conformance.md (buffer not modified)).

Bug: zero-copy decode: the packets' words are views of the caller's bytearray, so they change when it is reused.
Witness: decode a bytearray, then overwrite the buffer: words change.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def decode_message(data):
    if isinstance(data, bytearray):
        _m.as_bytes = lambda d: d
        try:
            return _orig(data)
        finally:
            _m.as_bytes = _ab0
    return _orig(data)


_ab0 = _m.as_bytes
_orig = _m.decode_message


def check_segment(buf, seg, seen):
    off, sid, n, codec, res, param, count, woff = seg
    p = _cs0(buf, seg, seen)
    if isinstance(buf, bytearray):
        words = np.frombuffer(buf, dtype=U32, count=count, offset=woff)
        object.__setattr__(p, "words", words)
    return p


_cs0 = _m.check_segment
_m.check_segment = check_segment
_m.decode_message = decode_message
# -----------------------------------------------------------------------------------------
export(_m, globals())
