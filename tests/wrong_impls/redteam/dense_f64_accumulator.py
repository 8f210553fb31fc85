"""Wrong implementation `dense_f64_accumulator` (dense_grad_var; misreads algorithm.md 2 (float32 order)).

Bug: products rounded to float32 but summed in a float64 accumulator, rounded once at the end.
Witness: x, delta normal(0,1) (6,4),(6,5), seed 2.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def matmul_tn(A, Bm):
    acc = np.zeros((A.shape[1], Bm.shape[1]), np.float64)
    for b in range(A.shape[0]):
        acc = acc + _m.f_mul(A[b][:, None], Bm[b][None, :]).astype(np.float64)
    return acc.astype(F32)


_m.matmul_tn = matmul_tn
# -----------------------------------------------------------------------------------------
export(_m, globals())
