"""Wrong implementation `trailing_bytes_ignored` (decode_message; misreads format.md Framing (the last 4 bytes are always the trailer; check 7)).

Bug: the CRC is read right after the last segment and anything after it is ignored.
Witness: a valid message plus 3 zero bytes: FormatError vs accepted.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def _scan(buf):
    if len(buf) < 12:
        return None
    S = _m.u32(buf, 8)
    off = 12
    for _ in range(S):
        if off + 20 > len(buf):
            return None
        off += 20 + 4 * _m.u32(buf, off + 16)
    return off if off <= len(buf) else None


def decode_message(data):
    buf = _m.as_bytes(data)
    end = _scan(buf)
    if end is not None and len(buf) - end > 4:
        buf = buf[: end + 4]
    return _orig(buf)


_orig = _m.decode_message
_m.decode_message = decode_message
# -----------------------------------------------------------------------------------------
export(_m, globals())
