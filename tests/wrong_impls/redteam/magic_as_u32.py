"""Wrong implementation `magic_as_u32` (encode_message / decode_message; misreads format.md Message header (magic is 4 bytes 56 47 43 4D)).

Bug: magic written as the little-endian u32 0x5647434D, i.e. bytes 4D 43 47 56.
Witness: encode_message([]) bytes differ.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_m.MAGIC = b"MCGV"
# -----------------------------------------------------------------------------------------
export(_m, globals())
