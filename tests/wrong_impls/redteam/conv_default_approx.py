"""Wrong implementation `conv_default_approx` (conv_grad_var; misreads algorithm.md 2.1 / decision 11 (exact is the default)).

Bug: form defaults to 'approx' when not given.
Witness: conv_grad_var(patches, delta) with P=2 equal terms: s_W 4 vs 2.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def conv_grad_var(patches, delta, form="approx"):
    return _orig(patches, delta, form)


_orig = _m.conv_grad_var
_m.conv_grad_var = conv_grad_var
# -----------------------------------------------------------------------------------------
export(_m, globals())
