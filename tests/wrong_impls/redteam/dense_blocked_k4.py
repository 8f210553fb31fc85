"""Wrong implementation `dense_blocked_k4` (dense_grad_var; misreads algorithm.md 2 (BLAS order outside the contract)).

Bug: BLAS-like blocking: partial sums over blocks of 4 samples, then the block sums added in order.
Witness: x = [[2^24],[1]x7], delta = ones (8,1): g_W 2^24 vs 2^24+4.
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
    for s in range(0, A.shape[0], 4):
        part = np.zeros_like(acc)
        for b in range(s, min(s + 4, A.shape[0])):
            part = _m.f_add(part, _m.f_mul(A[b][:, None], Bm[b][None, :]))
        acc = _m.f_add(acc, part)
    return acc


_m.matmul_tn = matmul_tn
# -----------------------------------------------------------------------------------------
export(_m, globals())
