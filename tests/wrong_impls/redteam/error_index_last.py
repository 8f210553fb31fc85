"""Wrong implementation `error_index_last` (vgc_step / strom_step; misreads algorithm.md 3 step 0 ('the first bad index')).

Bug: the reported index is the last bad element (a parallel reduction keeping the max index).
Witness: g=[nan, 0, inf]: index 0 vs 2.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_m.first_bad = lambda mask: int(len(mask) - 1 - np.argmax(mask[::-1]))
# -----------------------------------------------------------------------------------------
export(_m, globals())
