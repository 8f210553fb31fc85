"""Wrong implementation `gradient_modified` (vgc_step; misreads conformance.md adapter protocol (g, s never modified)).

Bug: g is used as scratch: after a successful step it holds r + g.
Witness: r0=[1], g=[0.25]: g stays 0.25 vs becomes 1.25.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def accumulate(state, g, s=None):
    r_new, v_new = _orig(state, g, s)
    if g.flags.writeable:
        g[...] = r_new
    return r_new, v_new


_orig = _m.accumulate
_m.accumulate = accumulate
# -----------------------------------------------------------------------------------------
export(_m, globals())
