"""Wrong implementation `dense_ftz_squares` (dense_grad_var / conv approx; misreads demo.md Portable primitives; algorithm.md 2.1 range (no flush to zero)).

Bug: the squares x*x and D*D are flushed to zero when subnormal (CUDA -ftz=true).
Witness: x = [[1e-20]], delta = [[1]]: s_W = 1e-40 (subnormal) vs 0.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def square(a):
    r = _m.f_mul(a, a)
    r = np.where(np.abs(r) < np.float32(2.0**-126), np.float32(0), r).astype(F32)
    return r


_m.square = square
# -----------------------------------------------------------------------------------------
export(_m, globals())
