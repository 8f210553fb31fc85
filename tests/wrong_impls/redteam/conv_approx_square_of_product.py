"""Wrong implementation `conv_approx_square_of_product` (conv_grad_var; misreads algorithm.md 2.1 range table (approx squares x and D separately)).

Bug: approx s~_W accumulates (x*D)^2 instead of (x*x)*(D*D), so it never overflows/underflows as documented.
Witness: patches 1e20, delta 1e-20, approx: s_W +inf vs 1.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def approx_sW(Xf, Df):
    acc = np.zeros((Xf.shape[1], Df.shape[1]), F32)
    for b in range(Xf.shape[0]):
        p = _m.f_mul(Xf[b][:, None], Df[b][None, :])
        acc = _m.f_add(acc, _m.f_mul(p, p))
    return acc


_m.approx_sW = approx_sW
# -----------------------------------------------------------------------------------------
export(_m, globals())
