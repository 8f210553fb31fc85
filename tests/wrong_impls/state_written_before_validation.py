"""Bug: r <- r + g is written into the state before s is validated, so a rejected step
leaves the state changed."""

import numpy as np

from vgc_ref.criterion import check_finite
from vgc_ref.state import check_vector
from wrong_impls._base import decode_accumulate, decode_message, dense_grad_var, encode_message, strom_step
from wrong_impls._base import vgc_step as _vgc_step


def vgc_step(state, g, s, params):
    check_vector("g", g, state.n)
    check_finite("g", g, state.segment_id)
    with np.errstate(over="ignore"):
        state.r[...] = state.r + g  # too early: s has not been checked yet
    return _vgc_step(state, np.zeros_like(g), s, params)


__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
