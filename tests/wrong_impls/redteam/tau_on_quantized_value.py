"""Wrong implementation `tau_on_quantized_value` (vgc_step (hybrid); misreads algorithm.md 3 step 2 / Hybrid (floor on |r_i|, before rounding)).

Bug: the hybrid floor is applied to the rounded value |q_i| = 2^(e_i-127) instead of |r_i|.
Witness: tau=1.2, g=[1.3]: sent (|r| >= tau) vs held (|q| = 1 < tau).
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def criterion(r, v, alpha32, tau32):
    sendable, e = _m.round_exponent(r)
    q = _m.quantized_values(np.zeros(r.shape, U32), e)
    return (_m.f_mul(r, r) > _m.f_mul(alpha32, v)) & (q >= tau32)


_m.criterion = criterion
# -----------------------------------------------------------------------------------------
export(_m, globals())
