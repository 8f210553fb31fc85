"""Wrong implementation `conv_form_hyperparameter_error` (conv_grad_var; misreads algorithm.md Errors (form is not listed; HyperparameterError covers 'method or backend')).

Bug: an unknown form raises HyperparameterError('form') instead of InputError('form').
Witness: form='fast'.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_form(form):
    if form not in ("exact", "approx"):
        raise HyperparameterError("form", form, "must be 'exact' or 'approx'")


_m.check_form = check_form
# -----------------------------------------------------------------------------------------
export(_m, globals())
