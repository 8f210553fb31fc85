"""Wrong implementation `dense_square_of_product` (dense_grad_var; misreads algorithm.md 2 / decision 14 (squares rounded before their product)).

Bug: s_W term computed as (x*D)^2 (square of the rounded product) instead of (x*x)*(D*D).
Witness: x, delta normal(0,1) (3,4),(3,4), seed 4.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def dense_grad_var(x, delta):
    gW, sW, gb, sb = _orig(x, delta)
    acc = np.zeros_like(sW)
    for b in range(x.shape[0]):
        p = _m.f_mul(x[b][:, None], delta[b][None, :])
        acc = _m.f_add(acc, _m.f_mul(p, p))
    return gW, acc, gb, sb


_orig = _m.dense_grad_var
_m.dense_grad_var = dense_grad_var
# -----------------------------------------------------------------------------------------
export(_m, globals())
