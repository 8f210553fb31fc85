"""Wrong implementation `strom_zeroes_v` (strom_step; misreads conformance.md adapter protocol (strom_step never reads or writes state.v)).

Bug: Strom zeroes v of the sent elements (VGC's update reused).
Witness: v0=[7], g=[1], tau=0.5: v stays 7 vs 0.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def strom_step(state, g, params):
    pkt = _orig(state, g, params)
    state.v[(pkt.words >> U32(1)).astype(np.int64)] = 0
    return pkt


_orig = _m.strom_step
_m.strom_step = strom_step
# -----------------------------------------------------------------------------------------
export(_m, globals())
