"""Wrong implementation `alpha_unconverted` (vgc_step; misreads algorithm.md 3 / decision 3 (hyperparameters converted to float32 once)).

Bug: alpha*v uses the Python float alpha (float64 product, then rounded to float32).
Witness: alpha=0.1, g=[3.13198], s=[98.09298] (found by search): held vs sent.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def vgc_step(state, g, s, params):
    _m.criterion = lambda r, v, a32, t32: _crit(r, v, np.float64(params.alpha), t32)
    try:
        return _orig(state, g, s, params)
    finally:
        _m.criterion = _crit


def _crit(r, v, alpha, tau32):
    if isinstance(alpha, np.float64):
        av = (alpha * v.astype(np.float64)).astype(F32)
        return (_m.f_mul(r, r) > av) & (np.abs(r) >= tau32)
    return _crit0(r, v, alpha, tau32)


_crit0 = _m.criterion
_orig = _m.vgc_step
_m.vgc_step = vgc_step
# -----------------------------------------------------------------------------------------
export(_m, globals())
