"""Wrong implementation `dense_empty_batch_ok` (dense_grad_var; misreads algorithm.md 2 (silent on B = 0)).

Bug: a batch of zero samples returns +0.0 arrays instead of raising InputError('x').
Witness: x (0,3), delta (0,2).
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def dense_grad_var(x, delta):
    if (
        isinstance(x, np.ndarray)
        and isinstance(delta, np.ndarray)
        and x.ndim == 2
        and delta.ndim == 2
        and x.dtype == F32
        and delta.dtype == F32
        and x.shape[0] == 0 == delta.shape[0]
    ):
        z = np.zeros((x.shape[1], delta.shape[1]), F32)
        return z, z.copy(), np.zeros(delta.shape[1], F32), np.zeros(delta.shape[1], F32)
    return _orig(x, delta)


_orig = _m.dense_grad_var
_m.dense_grad_var = dense_grad_var
# -----------------------------------------------------------------------------------------
export(_m, globals())
