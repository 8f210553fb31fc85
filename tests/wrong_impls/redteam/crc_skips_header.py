"""Wrong implementation `crc_skips_header` (encode_message / decode_message; misreads format.md Trailer (CRC of every byte before it)).

Bug: the CRC covers only the bytes after the 12-byte message header.
Witness: encode_message([]) bytes differ.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_m.crc32 = lambda data: __import__("zlib").crc32(bytes(data)[12:]) & 0xFFFFFFFF
# -----------------------------------------------------------------------------------------
export(_m, globals())
