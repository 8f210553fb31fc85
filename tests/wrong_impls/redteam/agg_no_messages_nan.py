"""Wrong implementation `agg_no_messages_nan` (decode_accumulate; misreads conformance.md error table ('no messages' -> InputError('messages'))).

Bug: P = 0 is not refused: the result is 0/0 = NaN per element.
Witness: decode_accumulate([], [2]).
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def decode_accumulate(messages, sizes, out=None):
    if isinstance(messages, list) and not messages:
        return _m.write_out(out, [_m.divide(_m.zeros32(n), 0) for n in _m.check_sizes(sizes)])
    return _orig(messages, sizes, out)


_orig = _m.decode_accumulate
_m.decode_accumulate = decode_accumulate
# -----------------------------------------------------------------------------------------
export(_m, globals())
