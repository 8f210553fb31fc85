"""Wrong implementation `s_checks_single_pass` (vgc_step; misreads conformance.md adapter protocol check order ('s finite, s >= 0' as two checks)).

Bug: s is validated in one element-wise pass (finite and >= 0 per element), so a negative s before a NaN s wins.
Witness: s=[0, -1, nan]: NonFiniteError('s', index 2) vs NegativeVarianceError(index 1).
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_finite(name, x, seg):
    if name == "s":
        bad = ~np.isfinite(x) | (x < 0)
        if bad.any():
            i = _m.first_bad(bad)
            if np.isfinite(x[i]):
                raise NegativeVarianceError(seg, i, float(x[i]))
            raise NonFiniteError(name, seg, i, float(x[i]))
        return
    return _orig(name, x, seg)


_orig = _m.check_finite
_m.check_finite = check_finite
# -----------------------------------------------------------------------------------------
export(_m, globals())
