"""Wrong implementation `state_rebound` (vgc_step; misreads conformance.md adapter protocol (state.r, state.v updated in place)).

Bug: the new r and v are assigned to state.r / state.v (rebinding) instead of written into the caller's arrays.
Witness: g=[1.3]: the caller's r array holds 0.3 vs its old 0.0.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def vgc_step(state, g, s, params):
    r0, v0 = state.r, state.v
    old_r, old_v = r0.copy(), v0.copy()
    pkt = _orig(state, g, s, params)
    state.r, state.v = r0.copy(), v0.copy()
    r0[...] = old_r
    v0[...] = old_v
    return pkt


_orig = _m.vgc_step
_m.vgc_step = vgc_step
# -----------------------------------------------------------------------------------------
export(_m, globals())
