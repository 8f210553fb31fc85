"""Wrong implementation `header_reserved_ignored` (decode_message; misreads format.md Message header / check 4 (reserved MUST be zero)).

Bug: the decoder ignores the header's reserved u16.
Witness: valid message with reserved = 1 (CRC fixed): FormatError('reserved', 6) vs accepted.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def frame(buf):
    b = bytearray(buf)
    b[6:8] = b"\0\0"
    return _orig(bytes(b))


_orig = _m.frame
_m.frame = frame
# -----------------------------------------------------------------------------------------
export(_m, globals())
