"""Wrong implementation `negative_zero_variance_rejected` (vgc_step; misreads algorithm.md 3 step 0 (every s_i >= 0)).

Bug: s >= 0 is tested with the sign bit, so s = -0.0 raises NegativeVarianceError.
Witness: s=[-0.0]: accepted vs NegativeVarianceError.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_nonneg(x, seg):
    bad = np.signbit(x)
    if bad.any():
        i = _m.first_bad(bad)
        raise NegativeVarianceError(seg, i, float(x[i]))


_m.check_nonneg = check_nonneg
# -----------------------------------------------------------------------------------------
export(_m, globals())
