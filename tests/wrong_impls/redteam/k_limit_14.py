"""Wrong implementation `k_limit_14` (vgc_step; misreads algorithm.md 3 step 4 (k_i > 15 not sendable; k = 15 is)).

Bug: k = 15 is treated as not sendable (k < 15 instead of k <= 15).
Witness: g = [1, 2^-15]: two words vs one.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_m.k_sendable = lambda k: k < 15
# -----------------------------------------------------------------------------------------
export(_m, globals())
