"""Wrong implementation `crit_fma` (vgc_step; misreads algorithm.md 3 (no fused multiply-add anywhere)).

Bug: criterion evaluated as fma(r, r, -alpha*v) > 0 (exact r^2, one rounding).
Witness: g=1+2^-12, alpha=1, s=1+2^-11: rr rounds to 1+2^-11 (held) vs exact r^2 greater (sent).
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def criterion(r, v, alpha32, tau32):
    av = _m.f_mul(alpha32, v).astype(np.float64)
    return (r.astype(np.float64) * r.astype(np.float64) - av > 0) & (np.abs(r) >= tau32)


_m.criterion = criterion
# -----------------------------------------------------------------------------------------
export(_m, globals())
