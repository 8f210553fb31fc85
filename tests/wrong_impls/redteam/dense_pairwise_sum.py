"""Wrong implementation `dense_pairwise_sum` (dense_grad_var; misreads algorithm.md 2 (samples added in increasing b)).

Bug: the B rounded products are summed by a pairwise tree (as numpy.sum / a GPU reduction does).
Witness: x, delta normal(0,1) (8,3),(8,3), seed 3.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def _tree(terms):
    while len(terms) > 1:
        nxt = [_m.f_add(terms[i], terms[i + 1]) for i in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return _m.f_add(np.zeros_like(terms[0]), terms[0])


def matmul_tn(A, Bm):
    if A.shape[0] == 0:
        return np.zeros((A.shape[1], Bm.shape[1]), F32)
    return _tree([_m.f_mul(A[b][:, None], Bm[b][None, :]) for b in range(A.shape[0])])


_m.matmul_tn = matmul_tn
# -----------------------------------------------------------------------------------------
export(_m, globals())
