"""Wrong implementation `exponent_base_over_all_elements` (vgc_step; misreads algorithm.md 3 step 4 (E = max e_i over sendable candidates)).

Bug: E is the largest exponent over all elements of r, not just the candidates.
Witness: r0=[8, 0], v0=[1000, 0], g=[0, 1]: E 127 vs 130 (and k=3).
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def exponent_base(mask, e):
    return int(e.max()) if mask.any() else 0


_m.exponent_base = exponent_base
# -----------------------------------------------------------------------------------------
export(_m, globals())
