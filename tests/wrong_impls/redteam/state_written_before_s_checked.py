"""Wrong implementation `state_written_before_s_checked` (vgc_step; misreads algorithm.md 3 step 0 (validate before any state changes)).

Bug: r <- r + g is stored before s is validated, so a bad s leaves r modified.
Witness: g=[1], s=[nan]: NonFiniteError and r == 0 vs r == 1.
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
    r_old = state.r.copy()
    state.r[...] = _m.f_add(state.r, g)
    if s is not None:
        _m.check_vec("s", s, n)
        _m.check_finite("s", s, seg)
        _m.check_nonneg(s, seg)
    r_new = _m.check_sum("r + g", r_old, g, seg)
    v_new = None if s is None else _m.check_sum("v + s", state.v, s, seg)
    return r_new, v_new


_m.accumulate = accumulate
# -----------------------------------------------------------------------------------------
export(_m, globals())
