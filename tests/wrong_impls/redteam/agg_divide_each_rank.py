"""Wrong implementation `agg_divide_each_rank` (decode_accumulate; misreads algorithm.md 7 (divide by float32(P) at the end)).

Bug: each rank's value is divided by P before it is added.
Witness: P=3 DENSE ranks [1], [2], [4]: 2.3333333 vs 2.3333335.
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
    accs = [_m.zeros32(n) for n in sizes]
    for w in _m.rank_order(packs):
        for j, p in enumerate(packs[w]):
            idx, val = _m.packet_values(p)
            accs[j][idx] = _m.f_add(accs[j][idx], _m.f_div(val, F32(P)))
    return accs


_m.reduce_ranks = reduce_ranks
# -----------------------------------------------------------------------------------------
export(_m, globals())
