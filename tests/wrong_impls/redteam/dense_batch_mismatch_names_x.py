"""Wrong implementation `dense_batch_mismatch_names_x` (dense_grad_var; misreads conformance.md adapter protocol (bad layer inputs: name)).

Bug: when x and delta disagree in batch size the InputError names 'x' instead of 'delta'.
Witness: x (2,3), delta (3,2): InputError name 'delta' vs 'x'.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def dense_grad_var(x, delta):
    x = _m.check_mat("x", x, 2)
    delta = _m.check_mat("delta", delta, 2)
    if x.shape[0] != delta.shape[0]:
        raise InputError("x", f"shape {x.shape}", "batch differs from delta")
    return _orig_dgv(x, delta)


_orig_dgv = _m.dense_grad_var
_m.dense_grad_var = dense_grad_var
# -----------------------------------------------------------------------------------------
export(_m, globals())
