"""Wrong implementation `round_no_clamp` (vgc_step; misreads algorithm.md 3 step 3 (clamped to 254)).

Bug: the rounded exponent is not clamped: |r| >= 1.414*2^127 gives e = 255, an infinite q and E = 255.
Witness: g = 3.3e38: E 254 vs 255 (r becomes -inf).
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def round_exponent(r):
    bits = _m.f32_bits(r) & U32(0x7FFFFFFF)
    ef = (bits >> U32(23)).astype(np.int64)
    mf = bits & U32(0x7FFFFF)
    return ef != 0, ef + (mf >= 0x3504F3).astype(np.int64)


_m.round_exponent = round_exponent
# -----------------------------------------------------------------------------------------
export(_m, globals())
