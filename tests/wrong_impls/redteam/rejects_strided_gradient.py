"""Wrong implementation `rejects_strided_gradient` (vgc_step / strom_step; misreads conformance.md adapter protocol (any 1-D float32 ndarray; the ctypes example uses flags='C')).

Bug: g and s must be C-contiguous: a strided view raises InputError.
Witness: g = arange(8)[::2]: packet vs InputError('g').
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
    if not x.flags.c_contiguous:
        raise InputError(name, "non-contiguous", "must be C-contiguous")
    return x


_orig = _m.check_vec
_m.check_vec = check_vec
# -----------------------------------------------------------------------------------------
export(_m, globals())
