"""Wrong implementation `agg_out_checked_lazily` (decode_accumulate; misreads conformance.md (a rejected call leaves out as it was)).

Bug: each out[j] is validated only when it is written, so out[0] is overwritten before a bad out[1] is refused.
Witness: out = [good float32[2], float64[1]]: out[0] unchanged vs overwritten.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def check_out(out, sizes):
    if out is None:
        return None
    if isinstance(out, np.ndarray) or not hasattr(out, "__len__") or len(out) != len(sizes):
        raise InputError("out", type(out).__name__, "must be a list with one array per segment")
    return out


def write_out(out, res):
    if out is None:
        return res
    for j, (a, r) in enumerate(zip(out, res)):
        if (
            not isinstance(a, np.ndarray)
            or a.dtype != F32
            or a.ndim != 1
            or a.shape[0] != r.shape[0]
            or not a.flags.writeable
        ):
            raise InputError(f"out[{j}]", getattr(a, "shape", None), "must be float32[n]")
        a[...] = r
    return list(out)


_m.check_out = check_out
_m.write_out = write_out
# -----------------------------------------------------------------------------------------
export(_m, globals())
