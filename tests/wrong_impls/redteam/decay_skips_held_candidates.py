"""Wrong implementation `decay_skips_held_candidates` (vgc_step; misreads algorithm.md 3 step 5 ('for all others v <- zeta*v')).

Bug: candidates held back because k > 15 keep v undecayed (only non-candidates decay).
Witness: g=[1, 2^-20], s=[0, 1e-13], zeta=0.5: v[1] halves vs stays.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def vgc_step(state, g, s, params):
    r, v = _m.accumulate(state, g, s)
    cand = _m.criterion(r, v, params.alpha32, params.tau32) & _m.round_exponent(r)[0]
    pkt = _orig(state, g, s, params)
    sent = np.zeros(state.n, bool)
    sent[(pkt.words >> U32(5)).astype(np.int64)] = True
    keep = cand & ~sent
    state.v[keep] = v[keep]
    return pkt


_orig = _m.vgc_step
_m.vgc_step = vgc_step
# -----------------------------------------------------------------------------------------
export(_m, globals())
