"""Wrong implementation `dense_rejects_empty_features` (dense_grad_var; misreads algorithm.md 2 (silent on in = 0 / out = 0)).

Bug: a layer with zero inputs or outputs is refused with InputError (the port checks every dimension > 0).
Witness: x (2,0), delta (2,2): empty (0,2) results vs InputError('x').
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def dense_grad_var(x, delta):
    for name, a in (("x", x), ("delta", delta)):
        if isinstance(a, np.ndarray) and a.ndim == 2 and a.shape[1] == 0:
            raise InputError(name, f"shape {a.shape}", "needs at least one feature")
    return _orig(x, delta)


_orig = _m.dense_grad_var
_m.dense_grad_var = dense_grad_var
# -----------------------------------------------------------------------------------------
export(_m, globals())
