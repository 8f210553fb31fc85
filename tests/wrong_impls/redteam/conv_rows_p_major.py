"""Wrong implementation `conv_rows_p_major` (conv_grad_var; misreads algorithm.md 2.1 order (rows b-major, then p)).

Bug: the B*P rows of g_W are visited p-major (positions outer, samples inner).
Witness: patches [[[2^24],[1]],[[-2^24],[0]]], delta ones (2,2,1), exact: g_W 0 vs 1.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def flatten_rows(A):
    return np.ascontiguousarray(A.transpose(1, 0, 2)).reshape(A.shape[0] * A.shape[1], A.shape[2])


_m.flatten_rows = flatten_rows
# -----------------------------------------------------------------------------------------
export(_m, globals())
