"""Wrong implementation `agg_out_rebound` (decode_accumulate; misreads conformance.md adapter protocol (writes into out)).

Bug: out[j] = result rebinds the list entries; the caller's arrays are never written.
Witness: caller's out arrays hold g_hat vs stay at 9.0.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def write_out(out, res):
    if out is None:
        return res
    for j, r in enumerate(res):
        out[j] = r
    return list(out)


_m.write_out = write_out
# -----------------------------------------------------------------------------------------
export(_m, globals())
