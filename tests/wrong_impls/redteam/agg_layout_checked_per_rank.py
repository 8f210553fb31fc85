"""Wrong implementation `agg_layout_checked_per_rank` (decode_accumulate; misreads algorithm.md 7 ('Every message is fully validated before any output')).

Bug: each message is decoded and matched to the layout before the next is decoded, so an early layout mismatch hides a later format error.
Witness: rank 0 lacks a segment, rank 1 truncated: FormatError(rank 1) vs SegmentMismatchError.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def decode_accumulate(messages, sizes, out=None):
    if isinstance(messages, (list, tuple)) and messages:
        sz = _m.check_sizes(sizes)
        for w, msg in enumerate(messages):
            _m.check_layout(_m.decode_rank(w, msg), sz)
    return _orig(messages, sizes, out)


_orig = _m.decode_accumulate
_m.decode_accumulate = decode_accumulate
# -----------------------------------------------------------------------------------------
export(_m, globals())
