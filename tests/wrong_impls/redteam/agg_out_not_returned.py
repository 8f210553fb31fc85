"""Wrong implementation `agg_out_not_returned` (decode_accumulate; misreads conformance.md adapter protocol ('writes into out when given'; return value unspecified)).

Bug: with out given, the function writes out but returns freshly allocated arrays.
Witness: result[0] is out[0]: True vs False.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def write_out(out, res):
    _orig(out, res)
    return res


_orig = _m.write_out
_m.write_out = write_out
# -----------------------------------------------------------------------------------------
export(_m, globals())
