"""Wrong implementation `codec_checked_before_n` (decode_message; misreads format.md check order (9 n before 10 codec)).

Bug: the codec byte is checked before n > 2^27.
Witness: segment with n = 2^27+1 and codec 5: ('n', 16) vs ('codec', 20).
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
    if codec not in (0, 1, 2):
        raise FormatError("codec", off + 8, "unknown codec")
    return _orig(buf, seg, seen)


_orig = _m.check_segment
_m.check_segment = check_segment
# -----------------------------------------------------------------------------------------
export(_m, globals())
