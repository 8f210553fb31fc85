"""Wrong implementation `tau_compared_squared` (vgc_step (hybrid); misreads algorithm.md 3 step 2 (|r_i| >= tau, compared as magnitudes)).

Bug: the floor is evaluated without abs as r*r >= tau*tau (both rounded), which ties once the squares are subnormal.
Witness: tau=1e-20, g=[9.999999e-21] (just below tau), s=0: held vs sent.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def criterion(r, v, alpha32, tau32):
    rr = _m.f_mul(r, r)
    return (rr > _m.f_mul(alpha32, v)) & (rr >= _m.f_mul(tau32, tau32))


_m.criterion = criterion
# -----------------------------------------------------------------------------------------
export(_m, globals())
