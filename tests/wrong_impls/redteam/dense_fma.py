"""Wrong implementation `dense_fma` (dense_grad_var; misreads algorithm.md 2 (no FMA)).

Bug: each ordered product-accumulate is fused: acc + a*b computed in float64 and rounded once.
Witness: x, delta float32 normal(0,1) of shape (3,4),(3,5), seed 1.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def matmul_tn(A, Bm):
    acc = np.zeros((A.shape[1], Bm.shape[1]), F32)
    for b in range(A.shape[0]):
        acc = (
            acc.astype(np.float64) + A[b][:, None].astype(np.float64) * Bm[b][None, :].astype(np.float64)
        ).astype(F32)
    return acc


_m.matmul_tn = matmul_tn
# -----------------------------------------------------------------------------------------
export(_m, globals())
