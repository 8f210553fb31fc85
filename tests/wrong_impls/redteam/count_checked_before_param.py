"""Wrong implementation `count_checked_before_param` (decode_message; misreads format.md check order (13 param before 14 count)).

Bug: the count rule (14) is checked before the param rule (13).
Witness: VGC_Q4 segment n=1, E=0, two words: ('param', 24) vs ('count', 28).
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_segment(buf, seg, seen):
    off, sid, n, codec, res, param, count, woff = seg
    if (
        n <= _m.MAX_N
        and codec in (0, 1, 2)
        and res == b"\0\0\0"
        and sid not in seen
        and _m.count_error(n, codec, count)
    ):
        raise FormatError("count", off + 16, "count does not fit n")
    return _cs(buf, seg, seen)


_cs = _m.check_segment
_m.check_segment = check_segment
# -----------------------------------------------------------------------------------------
export(_m, globals())
