"""Wrong implementation `strom_index_masked_27` (decode_message; misreads format.md STROM ('a word with any of bits 31..28 set fails index < n')).

Bug: the STROM index is masked to 27 bits like the VGC_Q4 field, so high bits are silently dropped.
Witness: STROM word 0x80000002 in a segment of n=4: FormatError vs index 1.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def word_index(codec, words):
    if codec == 2:
        return ((words >> U32(1)) & U32((1 << 27) - 1)).astype(np.int64)
    return _orig(codec, words)


_orig = _m.word_index
_m.word_index = word_index
# -----------------------------------------------------------------------------------------
export(_m, globals())
