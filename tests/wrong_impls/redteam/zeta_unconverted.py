"""Wrong implementation `zeta_unconverted` (vgc_step; misreads algorithm.md 3 step 5 (one rounded multiply by zeta32)).

Bug: the decay uses the Python float zeta: v * 0.999 in float64, rounded once.
Witness: zeta=0.999, g=0, s=[96.20406]: v 96.107864 vs 96.10786.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def vgc_step(state, g, s, params):
    _m.decay = lambda z32, v: (np.float64(params.zeta) * v.astype(np.float64)).astype(F32)
    try:
        return _orig(state, g, s, params)
    finally:
        _m.decay = _decay0


_decay0 = _m.decay
_orig = _m.vgc_step
_m.vgc_step = vgc_step
# -----------------------------------------------------------------------------------------
export(_m, globals())
