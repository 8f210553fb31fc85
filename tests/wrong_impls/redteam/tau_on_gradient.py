"""Wrong implementation `tau_on_gradient` (vgc_step (hybrid); misreads algorithm.md 3 step 2 / Hybrid (floor on |r_i|, after accumulation)).

Bug: the hybrid floor is tested on this step's |g_i| instead of the accumulated |r_i|.
Witness: r0=0.5, g=0.5, tau=0.75: r=1 sent vs held.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def vgc_step(state, g, s, params):
    gg = g

    def crit(r, v, a32, t32):
        return (_m.f_mul(r, r) > _m.f_mul(a32, v)) & (np.abs(gg) >= t32)

    _m.criterion = crit
    try:
        return _orig(state, g, s, params)
    finally:
        _m.criterion = _crit0


_crit0 = _m.criterion
_orig = _m.vgc_step
_m.vgc_step = vgc_step
# -----------------------------------------------------------------------------------------
export(_m, globals())
