"""Wrong implementation `crc_big_endian` (encode_message / decode_message; misreads format.md Trailer (every integer little-endian)).

Bug: the CRC is written and read big-endian.
Witness: encode_message([]) bytes differ.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import struct

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_m.pack_crc = lambda c: struct.pack(">I", c)
_m.read_crc = lambda buf: struct.unpack_from(">I", buf, len(buf) - 4)[0]
# -----------------------------------------------------------------------------------------
export(_m, globals())
