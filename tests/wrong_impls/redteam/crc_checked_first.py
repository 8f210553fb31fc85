"""Wrong implementation `crc_checked_first` (decode_message; misreads format.md What a decoder rejects (framing 1-7 before checksum 8)).

Bug: the CRC is verified before the framing checks.
Witness: a valid message cut before its CRC: words/count truncated vs crc32 mismatch.
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
    if len(buf) >= 4:
        _m.check_crc(buf)
    segs = _m.frame(buf)
    seen = set()
    return [_m.check_segment(buf, seg, seen) for seg in segs]


_m.decode_message = decode_message
# -----------------------------------------------------------------------------------------
export(_m, globals())
