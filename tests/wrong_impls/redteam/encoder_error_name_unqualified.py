"""Wrong implementation `encoder_error_name_unqualified` (encode_message; misreads format.md 'naming the packet's position, the field' (e.g. packets[2].words[5])).

Bug: the InputError name omits the packet position: 'words[5]' instead of 'packets[2].words[5]'.
Witness: second packet with an index >= n.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def validate_packet(i, p, seen):
    try:
        return _orig(i, p, seen)
    except InputError as e:
        pre = f"packets[{i}]."
        if e.name.startswith(pre):
            raise InputError(e.name[len(pre) :], e.value, "invalid") from None
        raise


_orig = _m.validate_packet
_m.validate_packet = validate_packet
# -----------------------------------------------------------------------------------------
export(_m, globals())
