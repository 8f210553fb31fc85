"""Wrong implementation `dense_acc_from_first_term` (dense_grad_var; misreads algorithm.md 2 (accumulator starting at +0.0)).

Bug: the accumulator is initialised with the first product instead of +0.0 (so -0.0 survives).
Witness: x = [[-1]], delta = [[0]]: g_W = +0.0 vs -0.0.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def matmul_tn(A, Bm):
    if A.shape[0] == 0:
        return np.zeros((A.shape[1], Bm.shape[1]), F32)
    acc = _m.f_mul(A[0][:, None], Bm[0][None, :])
    for b in range(1, A.shape[0]):
        acc = _m.f_add(acc, _m.f_mul(A[b][:, None], Bm[b][None, :]))
    return acc


_m.matmul_tn = matmul_tn
# -----------------------------------------------------------------------------------------
export(_m, globals())
