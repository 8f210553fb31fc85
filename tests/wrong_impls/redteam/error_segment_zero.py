"""Wrong implementation `error_segment_zero` (vgc_step / strom_step; misreads conformance.md adapter protocol (segment attribute must match)).

Bug: errors report segment 0 (the C library never sees the segment id) instead of state.segment_id.
Witness: segment 7, g=[nan]: segment 7 vs 0.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_finite(name, x, seg):
    return _orig(name, x, 0)


_orig = _m.check_finite
_m.check_finite = check_finite
# -----------------------------------------------------------------------------------------
export(_m, globals())
