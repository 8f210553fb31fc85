"""Wrong implementation `overflow_checked_before_s` (vgc_step; misreads algorithm.md decision 2 (g, then s, then the sums)).

Bug: r + g overflow is checked right after g, before s is validated.
Witness: r0=3e38, g=3e38, s=[nan]: NonFiniteError('s') vs AccumulatorOverflowError('r + g').
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def accumulate(state, g, s=None):
    n = state.n
    seg = state.segment_id
    _m.check_vec("g", g, n)
    _m.check_finite("g", g, seg)
    r_new = _m.check_sum("r + g", state.r, g, seg)
    if s is None:
        return r_new, None
    _m.check_vec("s", s, n)
    _m.check_finite("s", s, seg)
    _m.check_nonneg(s, seg)
    return r_new, _m.check_sum("v + s", state.v, s, seg)


_m.accumulate = accumulate
# -----------------------------------------------------------------------------------------
export(_m, globals())
