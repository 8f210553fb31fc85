"""Wrong implementation `encoder_allows_duplicate_ids` (encode_message; misreads format.md 'content rules ... together with the uniqueness of segment ids').

Bug: the encoder does not check that segment ids are unique (the decoder still does).
Witness: encode two packets with id 0: InputError vs bytes.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_orig = _m.validate_packet
_m.validate_packet = lambda i, p, seen: _orig(i, p, set())
# -----------------------------------------------------------------------------------------
export(_m, globals())
