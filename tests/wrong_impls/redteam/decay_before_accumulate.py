"""Wrong implementation `decay_before_accumulate` (vgc_step; misreads algorithm.md 3 steps 1 and 5 (v <- zeta*(v+s) for held elements)).

Bug: held elements get v <- zeta*v_old + s (decay applied before adding s) instead of zeta*(v_old+s).
Witness: v0=1, s=1, zeta=0.5, g=0: v 1.0 vs 1.5.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def vgc_step(state, g, s, params):
    v_old = state.v.copy()
    pkt = _orig(state, g, s, params)
    held = np.ones(state.n, bool)
    held[(pkt.words >> U32(5)).astype(np.int64)] = False
    state.v[held] = _m.f_add(_m.f_mul(params.zeta32, v_old[held]), s[held])
    return pkt


_orig = _m.vgc_step
_m.vgc_step = vgc_step
# -----------------------------------------------------------------------------------------
export(_m, globals())
