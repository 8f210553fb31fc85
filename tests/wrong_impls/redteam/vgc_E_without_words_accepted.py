"""Wrong implementation `vgc_E_without_words_accepted` (decode_message / encode_message; misreads format.md check 13 (E > 0 with count = 0 rejected)).

Bug: an empty VGC_Q4 packet with E > 0 is accepted.
Witness: empty VGC_Q4 packet with param 5.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def param_error(n, codec, param, count):
    if codec == 1 and count == 0 and 0 < param < 255:
        return None
    return _orig(n, codec, param, count)


_orig = _m.param_error
_m.param_error = param_error
# -----------------------------------------------------------------------------------------
export(_m, globals())
