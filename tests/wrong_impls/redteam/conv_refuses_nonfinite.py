"""Wrong implementation `conv_refuses_nonfinite` (conv_grad_var; misreads algorithm.md 2.1 range ('defined, not refused')).

Bug: a non-finite variance result raises NonFiniteError('s') instead of returning the IEEE value.
Witness: patches 1e20, delta 1e-25, approx -> NaN returned vs raise.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def conv_grad_var(patches, delta, form="exact"):
    res = _orig(patches, delta, form)
    for a in res:
        bad = ~np.isfinite(a.ravel())
        if bad.any():
            i = int(np.argmax(bad))
            raise NonFiniteError("s", 0, i, float(a.ravel()[i]))
    return res


_orig = _m.conv_grad_var
_m.conv_grad_var = conv_grad_var
# -----------------------------------------------------------------------------------------
export(_m, globals())
