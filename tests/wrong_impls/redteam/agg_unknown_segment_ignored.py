"""Wrong implementation `agg_unknown_segment_ignored` (decode_accumulate; misreads algorithm.md 7 (each segment id 0..S-1 exactly once)).

Bug: packets with a segment id >= S are skipped instead of raising SegmentMismatchError.
Witness: sizes [2], message with segments 0 and 1.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_layout(packets, sizes):
    return _orig([p for p in packets if p.segment_id < len(sizes)], sizes)


_orig = _m.check_layout
_m.check_layout = check_layout
# -----------------------------------------------------------------------------------------
export(_m, globals())
