"""Wrong implementation `agg_missing_segment_is_zero` (decode_accumulate; misreads algorithm.md 7 (every message carries every segment)).

Bug: a segment missing from a message counts as an empty packet instead of SegmentMismatchError.
Witness: sizes [2, 1], rank 0 lacks segment 1.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

import vgc_ref
from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_layout(packets, sizes):
    have = {p.segment_id for p in packets}
    extra = [
        vgc_ref.Packet(j, sizes[j], vgc_ref.Codec.VGC_Q4, 0, np.zeros(0, U32))
        for j in range(len(sizes))
        if j not in have
    ]
    return _orig(list(packets) + extra, sizes)


_orig = _m.check_layout
_m.check_layout = check_layout
# -----------------------------------------------------------------------------------------
export(_m, globals())
