"""Wrong implementation `conv_exact_bias_as_approx` (conv_grad_var; misreads algorithm.md 2.1 (exact s_b = sum_b (sum_p D_bp)^2)).

Bug: form 'exact' uses the approximate bias term sum_{b,p} D_bp^2 (only s_W made per-sample).
Witness: patches ones (1,2,1), delta [[[1],[1]]]: s_b 4 vs 2.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def exact_sb(D):
    return _m.column_sums(_m.square(_m.flatten_rows(D)))


_m.exact_sb = exact_sb
# -----------------------------------------------------------------------------------------
export(_m, globals())
