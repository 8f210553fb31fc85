"""Wrong implementation `decoder_strips_caller_buffer` (decode_message; misreads conformance.md adapter protocol (bytearray accepted and not modified)).

Bug: given a bytearray, the decoder peels the CRC off in place (del data[-4:]) after verifying it.
Witness: decode(bytearray(valid)): the caller's buffer is 4 bytes shorter afterwards.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def decode_message(data):
    out = _orig(data)
    if isinstance(data, bytearray):
        del data[-4:]
    return out


_orig = _m.decode_message
_m.decode_message = decode_message
# -----------------------------------------------------------------------------------------
export(_m, globals())
