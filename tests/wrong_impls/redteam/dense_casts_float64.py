"""Wrong implementation `dense_casts_float64` (dense_grad_var / conv_grad_var; misreads conformance.md adapter protocol (x, delta float32)).

Bug: float64 layer inputs are converted to float32 instead of rejected.
Witness: x float64 (2,2): InputError('x') vs a result.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_mat(name, a, ndim):
    if isinstance(a, np.ndarray) and a.dtype == np.float64:
        a = a.astype(F32)
    return _orig(name, a, ndim)


_orig = _m.check_mat
_m.check_mat = check_mat
# -----------------------------------------------------------------------------------------
export(_m, globals())
