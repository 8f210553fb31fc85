"""Wrong implementation `crit_float64_products` (vgc_step; misreads algorithm.md 3 step 2 (both products rounded separately, float32)).

Bug: r*r and alpha*v computed in float64 (with the float32 alpha) and compared unrounded.
Witness: alpha=3, g=[1.5059366], s=[0.75594836] (found by search): held vs sent.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def criterion(r, v, alpha32, tau32):
    r64 = r.astype(np.float64)
    return (r64 * r64 > np.float64(alpha32) * v.astype(np.float64)) & (np.abs(r) >= tau32)


_m.criterion = criterion
# -----------------------------------------------------------------------------------------
export(_m, globals())
