"""Wrong implementation `round_linear_midpoint` (vgc_step; misreads algorithm.md 3 step 3 (nearest power of two in the log domain)).

Bug: rounds to the nearest power of two in the linear domain (threshold mantissa 0x400000, i.e. 1.5).
Witness: g = 1.45: q = 2 vs 1.
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
    e = np.minimum(ef + (mf >= 0x400000).astype(np.int64), 254)
    return ef != 0, e


_m.round_exponent = round_exponent
# -----------------------------------------------------------------------------------------
export(_m, globals())
