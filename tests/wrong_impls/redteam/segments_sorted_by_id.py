"""Wrong implementation `segments_sorted_by_id` (encode_message; misreads format.md Segment / Canonical encoding (list order, not sorted)).

Bug: the encoder sorts packets by segment id.
Witness: packets with ids [2, 1].
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_m.order_packets = lambda packets: sorted(packets, key=lambda p: getattr(p, "segment_id", 0))
# -----------------------------------------------------------------------------------------
export(_m, globals())
