"""Wrong implementation `word_checks_one_pass` (decode_message / encode_message; misreads format.md 'Checks 15 to 17 and 19 each run over all of the segment's words').

Bug: checks 15-17 run word by word in one pass (first word breaking any rule).
Witness: VGC_Q4 words [k >= E at word 0, index >= n at word 1]: offset of word 1 vs word 0.
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
    if codec in (1, 2):
        idx = _m.word_index(codec, words)
        E = param & 0xFF
        for j in range(words.size):
            if idx[j] >= n:
                return ("words", j, "index >= n")
            if j and idx[j] <= idx[j - 1]:
                return ("words", j, "not increasing")
            if codec == 1 and int(words[j] & 0xF) >= E:
                return ("words", j, "k >= E")
    return _orig(n, codec, param, words)


_orig = _m.words_error
_m.words_error = words_error
# -----------------------------------------------------------------------------------------
export(_m, globals())
