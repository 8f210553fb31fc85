"""Wrong implementation `rejects_readonly_gradient` (vgc_step / strom_step; misreads conformance.md adapter protocol (g, s never modified; read-only allowed)).

Bug: g must be writeable (the port checks the buffer flags of every array it is given).
Witness: read-only g: packet vs InputError('g').
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
    if not x.flags.writeable:
        raise InputError(name, "read-only", "must be writeable")
    return x


_orig = _m.check_vec
_m.check_vec = check_vec
# -----------------------------------------------------------------------------------------
export(_m, globals())
