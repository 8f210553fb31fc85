"""Wrong implementation `strom_strict` (strom_step; misreads algorithm.md 4 (sent when |r_i| >= tau)).

Bug: Strom sends only when |r| > tau.
Witness: tau=0.5, g=[0.5]: sent vs held.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_m.strom_select = lambda r, params: np.abs(r) > F32(params.tau32)
# -----------------------------------------------------------------------------------------
export(_m, globals())
