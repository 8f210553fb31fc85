"""Wrong implementation `casts_float64_gradient` (vgc_step / strom_step; misreads conformance.md adapter protocol (g not a float32 ndarray -> InputError)).

Bug: a float64 g (or s) is converted to float32 instead of being refused.
Witness: g float64 [1.0]: InputError('g') vs a packet.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_vec(name, x, n):
    if isinstance(x, np.ndarray) and x.dtype == np.float64:
        x = x.astype(F32)
    _orig(name, x, n)
    return x


def accumulate(state, g, s=None):
    if isinstance(g, np.ndarray) and g.dtype == np.float64:
        g = g.astype(F32)
    if isinstance(s, np.ndarray) and s.dtype == np.float64:
        s = s.astype(F32)
    return _acc(state, g, s)


_orig = _m.check_vec
_acc = _m.accumulate
_m.check_vec = check_vec
_m.accumulate = accumulate
# -----------------------------------------------------------------------------------------
export(_m, globals())
