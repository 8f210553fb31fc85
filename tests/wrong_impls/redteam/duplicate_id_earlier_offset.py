"""Wrong implementation `duplicate_id_earlier_offset` (decode_message; misreads format.md check 12 (offset of the later segment)).

Bug: a repeated segment id is reported at the offset of the first segment carrying it.
Witness: two empty DENSE segments with id 5: offset 32 vs 12.
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
    _m.check_crc(buf)
    seen, first, out = set(), {}, []
    for seg in segs:
        try:
            out.append(_m.check_segment(buf, seg, seen))
        except FormatError as e:
            if e.field == "segment_id":
                raise FormatError("segment_id", first[seg[1]], e.reason) from None
            raise
        first.setdefault(seg[1], seg[0])
    return out


_m.decode_message = decode_message
# -----------------------------------------------------------------------------------------
export(_m, globals())
