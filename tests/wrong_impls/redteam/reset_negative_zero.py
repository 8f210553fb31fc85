"""Wrong implementation `reset_negative_zero` (vgc_step (reset); misreads algorithm.md 3 step 5 (r_i <- 0)).

Bug: reset mode writes r*0, so a sent negative element's residual becomes -0.0.
Witness: residual=reset, g=[-1.3]: r +0.0 vs -0.0.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def vgc_step(state, g, s, params):
    if params.residual != "reset":
        return _orig(state, g, s, params)
    before = state.r.copy()
    pkt = _orig(state, g, s, params)
    idx = (pkt.words >> U32(5)).astype(np.int64)
    state.r[idx] = _m.f_mul(_m.f_add(before[idx], g[idx]), F32(0.0))
    return pkt


_orig = _m.vgc_step
_m.vgc_step = vgc_step
# -----------------------------------------------------------------------------------------
export(_m, globals())
