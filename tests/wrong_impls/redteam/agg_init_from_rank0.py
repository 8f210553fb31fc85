"""Wrong implementation `agg_init_from_rank0` (decode_accumulate; misreads algorithm.md 7 (acc <- +0.0, never -0.0)).

Bug: the accumulator is initialised by copying rank 0's values, so a DENSE -0.0 survives.
Witness: P=1, DENSE [-0.0]: +0.0 vs -0.0.
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
            accs[j][idx] = val if w == 0 else _m.f_add(accs[j][idx], val)
    return [_m.divide(a, P) for a in accs]


_m.reduce_ranks = reduce_ranks
# -----------------------------------------------------------------------------------------
export(_m, globals())
