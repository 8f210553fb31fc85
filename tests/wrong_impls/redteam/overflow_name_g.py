"""Wrong implementation `overflow_name_g` (vgc_step / strom_step; misreads algorithm.md Errors (name is 'r + g' or 'v + s')).

Bug: an overflowing accumulation is reported with name 'g' / 's' instead of 'r + g' / 'v + s'.
Witness: r0=3e38, g=3e38: name 'r + g' vs 'g'.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_sum(name, a, b, seg):
    return _orig(name.split(" + ")[1], a, b, seg)


_orig = _m.check_sum
_m.check_sum = check_sum
# -----------------------------------------------------------------------------------------
export(_m, globals())
