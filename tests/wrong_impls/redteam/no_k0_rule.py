"""Wrong implementation `no_k0_rule` (encode_message / decode_message; misreads format.md check 18 / decision 12).

Bug: the 'non-empty VGC_Q4 packet needs a word with k = 0' rule is not implemented.
Witness: encode a VGC_Q4 packet E=130 whose only word has k=1: InputError vs bytes.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def words_error(n, codec, param, words):
    if codec == 1:
        words = np.asarray(words, U32)
        err = _orig(n, codec, param, words)
        if err and err[0] == "param":
            return None
        return err
    return _orig(n, codec, param, words)


_orig = _m.words_error
_m.words_error = words_error
# -----------------------------------------------------------------------------------------
export(_m, globals())
