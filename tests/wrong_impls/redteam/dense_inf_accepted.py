"""Wrong implementation `dense_inf_accepted` (decode_message / encode_message; misreads format.md DENSE / check 19 (inf and NaN rejected)).

Bug: the DENSE check rejects NaN only (isnan), so +-inf words pass.
Witness: DENSE word 0x7F800000.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def words_error(n, codec, param, words):
    if codec == 0:
        w = np.asarray(words, U32)
        bad = (((w >> U32(23)) & U32(0xFF)) == 0xFF) & ((w & U32(0x7FFFFF)) != 0)
        if bad.any():
            return ("words", _m.first_bad(bad), "NaN")
        return None
    return _orig(n, codec, param, words)


_orig = _m.words_error
_m.words_error = words_error
# -----------------------------------------------------------------------------------------
export(_m, globals())
