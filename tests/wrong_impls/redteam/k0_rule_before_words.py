"""Wrong implementation `k0_rule_before_words` (decode_message / encode_message; misreads format.md check order (18 after 15-17)).

Bug: the 'some word has k = 0' rule (param) is checked before the word checks 15-17.
Witness: VGC_Q4 words all k=1 and one index >= n: field words vs param.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def words_error(n, codec, param, words):
    words = np.asarray(words, U32)
    if codec == 1 and words.size and not ((words & U32(0xF)) == 0).any():
        return ("param", None, "no word with k = 0")
    return _orig(n, codec, param, words)


_orig = _m.words_error
_m.words_error = words_error
# -----------------------------------------------------------------------------------------
export(_m, globals())
