"""Wrong implementation `k_saturated_not_held` (vgc_step; misreads algorithm.md 3 step 4 (k_i > 15 is not sendable: the element stays in r)).

Bug: elements with k > 15 are sent with k saturated to 15 (value 2^(E-15-127)) instead of held back.
Witness: g=[1, 2^-20]: one word vs two (second k=15), r[1] = 2^-20 vs 2^-20 - 2^-15.
Everything else is the correct port (port/correct.py), loaded as a private copy.
"""

import numpy as np

import vgc_ref
from vgc_ref.errors import *
from wrong_impls.redteam._base import export, fresh

F32, U32 = np.float32, np.uint32
_m = fresh(__name__)


# ---- the one bug -------------------------------------------------------------------------
def vgc_step(state, g, s, params):
    r, v = _m.accumulate(state, g, s)
    cand = _m.criterion(r, v, params.alpha32, params.tau32)
    sendable, e = _m.round_exponent(r)
    cand = cand & sendable
    E = _m.exponent_base(cand, e)
    e = np.maximum(e, E - 15)  # the bug: saturate the 4-bit code instead of holding back
    k = E - e
    idx = np.nonzero(cand)[0]
    sign = _m.sign_bits(r[idx])
    q = _m.quantized_values(sign, e[idx])
    r_out = r.copy()
    if params.residual == "reset":
        r_out[idx] = F32(0.0)
    else:
        r_out[idx] = _m.feedback(r[idx], q)
    v_out = _m.decay(params.zeta32, v)
    v_out[idx] = F32(0.0)
    words = _m.vgc_words(idx, sign, k[idx])
    _m.store(state.r, r_out)
    _m.store(state.v, v_out)
    return vgc_ref.Packet(state.segment_id, state.n, vgc_ref.Codec.VGC_Q4, E if idx.size else 0, words)


_m.vgc_step = vgc_step
# -----------------------------------------------------------------------------------------
export(_m, globals())
