"""Bug: a step validates s before g, so an input with a bad g and a bad s
reports s."""

import numpy as np

from vgc_ref.criterion import check_finite
from vgc_ref.state import check_vector
from wrong_impls._base import (
    decode_accumulate,
    decode_message,
    dense_grad_var,
    encode_message,
    strom_step,
)
from wrong_impls._base import vgc_step as _vgc_step


def vgc_step(state, g, s, params):
    if isinstance(s, np.ndarray) and isinstance(g, np.ndarray) and s.shape == g.shape:
        check_vector("s", s, state.n)
        check_finite("s", s, state.segment_id)
    return _vgc_step(state, g, s, params)


__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
