"""Wrong implementation `agg_no_rank_attribute` (decode_accumulate; misreads conformance.md error table (FormatError ... and rank from decode_accumulate)).

Bug: a FormatError from decode_accumulate does not carry the rank.
Witness: rank 1's message truncated: rank attribute 1 vs absent.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)
# ---- the one bug -------------------------------------------------------------------------
_m.decode_rank = lambda w, m: _m.decode_message(m)
# -----------------------------------------------------------------------------------------
export(_m, globals())
