"""Wrong implementation `strom_subnormal_tau_rejected` (encode_message / decode_message; misreads format.md STROM (subnormal tau is allowed)).

Bug: STROM tau must be a normal float (>= 2^-126), so a subnormal tau is refused.
Witness: encode STROM packet with tau bits 0x00000001.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def param_error(n, codec, param, count):
    if codec == 2:
        tau = np.array(param, U32).view(F32)
        if not (np.isfinite(tau) and tau >= np.float32(2.0**-126)):
            return "tau not a positive normal float"
        return None
    return _orig(n, codec, param, count)


_orig = _m.param_error
_m.param_error = param_error
# -----------------------------------------------------------------------------------------
export(_m, globals())
