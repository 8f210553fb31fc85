"""Wrong implementation `memoryview_rejected` (decode_message; misreads conformance.md error table (bytes, bytearray or memoryview accepted)).

Bug: only bytes and bytearray are accepted; a memoryview raises InputError('data').
Witness: decode_message(memoryview(valid)).
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def as_bytes(data):
    if isinstance(data, memoryview):
        raise InputError("data", "memoryview", "must be bytes or bytearray")
    return _orig(data)


_orig = _m.as_bytes
_m.as_bytes = as_bytes
# -----------------------------------------------------------------------------------------
export(_m, globals())
