"""Wrong implementation `agg_last_bad_rank_reported` (decode_accumulate; misreads algorithm.md 7 / conformance.md (which rank's error is reported)).

Bug: messages are decoded from the last rank to the first, so the highest bad rank is reported.
Witness: rank 0 bad magic, rank 1 truncated: rank 0 magic vs rank 1 words.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def decode_accumulate(messages, sizes, out=None):
    if isinstance(messages, (list, tuple)) and messages:
        for w in reversed(range(len(messages))):
            try:
                _m.decode_message(messages[w])
            except FormatError as e:
                e.rank = w
                raise
            except InputError:
                pass
    return _orig(messages, sizes, out)


_orig = _m.decode_accumulate
_m.decode_accumulate = decode_accumulate
# -----------------------------------------------------------------------------------------
export(_m, globals())
