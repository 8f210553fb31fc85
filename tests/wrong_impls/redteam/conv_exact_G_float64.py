"""Wrong implementation `conv_exact_G_float64` (conv_grad_var; misreads algorithm.md 2.1 (every operation rounded to float32)).

Bug: the per-sample products G_b are computed in float64 (like per_sample_conv_grad_var) and rounded once.
Witness: patches/delta normal(0,1) (2,5,3)/(2,5,2), seed 6, exact.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def exact_sW(X, D):
    G = np.stack(
        [(X[b].astype(np.float64).T @ D[b].astype(np.float64)).astype(F32) for b in range(X.shape[0])]
    )
    return _m.sum_of_squares(G)


_m.exact_sW = exact_sW
# -----------------------------------------------------------------------------------------
export(_m, globals())
