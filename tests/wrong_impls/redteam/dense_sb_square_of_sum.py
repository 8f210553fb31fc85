"""Wrong implementation `dense_sb_square_of_sum` (dense_grad_var; misreads algorithm.md 2 (s_b = sum_z D_z^2)).

Bug: s_b computed as (sum_z D_z)^2, the conv 'exact' bias form applied to a dense layer.
Witness: delta = [[1],[-1]], x = [[1],[1]]: s_b = 2 vs 0.
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
    return gW, sW, gb, _m.square(gb)


_orig = _m.dense_grad_var
_m.dense_grad_var = dense_grad_var
# -----------------------------------------------------------------------------------------
export(_m, globals())
