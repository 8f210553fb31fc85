"""Wrong implementation `strom_sign_from_gradient` (strom_step; misreads algorithm.md 4 (q_i = sign(r_i) * tau)).

Bug: the sent sign is taken from this step's g instead of the accumulated r.
Witness: r0=[1], g=[-0.25], tau=0.5: +tau vs -tau.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def strom_step(state, g, params):
    r, _ = _m.accumulate(state, g, None)
    _m.sign_bits = lambda x: _sb0(g[np.nonzero(_m.strom_select(r, params))[0]])
    try:
        return _orig(state, g, params)
    finally:
        _m.sign_bits = _sb0


_sb0 = _m.sign_bits
_orig = _m.strom_step
_m.strom_step = strom_step
# -----------------------------------------------------------------------------------------
export(_m, globals())
