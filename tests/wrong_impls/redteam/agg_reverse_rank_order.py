"""Wrong implementation `agg_reverse_rank_order` (decode_accumulate; misreads algorithm.md 7 (for w = 0 .. P-1, rank order)).

Bug: ranks are summed from P-1 down to 0.
Witness: DENSE ranks [2^24], [1], [1]: (2^24+1)+1 = 2^24 vs 2^24+2.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_m.rank_order = lambda packs: list(reversed(range(len(packs))))
# -----------------------------------------------------------------------------------------
export(_m, globals())
