"""Wrong implementation `zero_length_segment_rejected` (vgc_step / strom_step; misreads algorithm.md 1 (a segment has 0 to 2^27 elements)).

Bug: a zero-length g is refused with InputError('g') (the port treats an empty buffer as a missing one).
Witness: n = 0: empty VGC_Q4 packet vs InputError('g').
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_vec(name, x, n):
    x = _orig(name, x, n)
    if x.shape[0] == 0:
        raise InputError(name, "length 0", "must not be empty")
    return x


_orig = _m.check_vec
_m.check_vec = check_vec
# -----------------------------------------------------------------------------------------
export(_m, globals())
