"""Wrong implementation `agg_multiply_reciprocal` (decode_accumulate; misreads algorithm.md 7 (acc / float32(P))).

Bug: the mean is acc * float32(1/P) instead of acc / float32(P).
Witness: P=3 DENSE ranks [1], [2], [4]: 7/3 = 2.3333333 vs 7*float32(1/3) = 2.3333335.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_m.divide = lambda acc, P: _m.f_mul(acc, F32(1.0 / P))
# -----------------------------------------------------------------------------------------
export(_m, globals())
