"""Wrong implementation `strom_tau_float64` (strom_step; misreads algorithm.md 4 / StromParams.tau32 (compare with float32 tau)).

Bug: the threshold comparison uses the Python float tau (|r| widened to float64).
Witness: tau=0.7 (tau32 < 0.7): g = tau32 sent vs held.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_m.strom_select = lambda r, params: np.abs(r).astype(np.float64) >= np.float64(params.tau)
# -----------------------------------------------------------------------------------------
export(_m, globals())
