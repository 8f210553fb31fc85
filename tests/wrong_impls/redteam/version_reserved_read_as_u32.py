"""Wrong implementation `version_reserved_read_as_u32` (decode_message; misreads format.md Message header / checks 3-4 (version and reserved are two u16 fields)).

Bug: version and reserved are read as one u32 that must equal 1, so a nonzero reserved is reported as field 'version' at offset 4.
Witness: empty message with reserved = 1: ('reserved', 6) vs ('version', 4).
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def frame(buf):
    if len(buf) - 4 >= 8 and buf[0:4] == _m.MAGIC and _m.u32(buf, 4) != 1:
        raise FormatError("version", 4, "bad version")
    return _orig(buf)


_orig = _m.frame
_m.frame = frame
# -----------------------------------------------------------------------------------------
export(_m, globals())
