"""Wrong implementation `strom_tau_ftz` (strom_step; misreads format.md STROM / StromParams (subnormal tau allowed; no flush to zero)).

Bug: a subnormal tau is flushed to +0.0 in the comparison, so |r| >= 0 sends every element, zeros included.
Witness: tau=1e-40, g=[0.0]: empty packet vs one word.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def strom_select(r, params):
    t = F32(params.tau32)
    if abs(t) < F32(2.0**-126):
        t = F32(0.0)
    return np.abs(r) >= t


_m.strom_select = strom_select
# -----------------------------------------------------------------------------------------
export(_m, globals())
