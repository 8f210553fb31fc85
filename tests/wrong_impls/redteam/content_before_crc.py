"""Wrong implementation `content_before_crc` (decode_message; misreads format.md What a decoder rejects (content checks 9-19 after the CRC)).

Bug: each segment's content is checked as it is framed, before the CRC.
Witness: a segment with n = 2^27+1 and a bad CRC: crc32 vs n.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def decode_message(data):
    buf = _m.as_bytes(data)
    segs = _m.frame(buf)
    seen = set()
    out = [_m.check_segment(buf, seg, seen) for seg in segs]
    _m.check_crc(buf)
    return out


_m.decode_message = decode_message
# -----------------------------------------------------------------------------------------
export(_m, globals())
