"""Wrong implementation `agg_float64_sum` (decode_accumulate; misreads algorithm.md 7 (in float32)).

Bug: the rank sum is accumulated in float64 and rounded once before the division.
Witness: DENSE ranks [2^24], [1], [1]: 2^24/3 vs (2^24+2)/3.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def reduce_ranks(packs, sizes):
    P = len(packs)
    accs = [np.zeros(n, np.float64) for n in sizes]
    for w in _m.rank_order(packs):
        for j, p in enumerate(packs[w]):
            idx, val = _m.packet_values(p)
            accs[j][idx] += val.astype(np.float64)
    return [_m.divide(a.astype(F32), P) for a in accs]


_m.reduce_ranks = reduce_ranks
# -----------------------------------------------------------------------------------------
export(_m, globals())
