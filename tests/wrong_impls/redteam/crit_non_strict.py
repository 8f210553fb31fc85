"""Wrong implementation `crit_non_strict` (vgc_step; misreads algorithm.md 3 step 2 (strict comparison)).

Bug: criterion uses r*r >= alpha*v.
Witness: g=[1], s=[0.5], alpha=2 (r*r == alpha*v == 1): held vs sent.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def criterion(r, v, alpha32, tau32):
    return (_m.f_mul(r, r) >= _m.f_mul(alpha32, v)) & (np.abs(r) >= tau32)


_m.criterion = criterion
# -----------------------------------------------------------------------------------------
export(_m, globals())
