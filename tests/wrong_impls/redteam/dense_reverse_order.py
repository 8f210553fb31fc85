"""Wrong implementation `dense_reverse_order` (dense_grad_var; misreads algorithm.md 2 (increasing b)).

Bug: the samples are accumulated in decreasing b (a backward loop).
Witness: x = [[2^24],[1],[1]], delta = [[1],[1],[1]]: g_W 2^24 vs 2^24+2.
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
    for b in reversed(range(A.shape[0])):
        acc = _m.f_add(acc, _m.f_mul(A[b][:, None], Bm[b][None, :]))
    return acc


_m.matmul_tn = matmul_tn
# -----------------------------------------------------------------------------------------
export(_m, globals())
