"""Bug: a NonFiniteError names the last bad index of g or s instead of the first."""

import numpy as np

from vgc_ref.errors import NonFiniteError
from wrong_impls._base import decode_accumulate, decode_message, dense_grad_var, encode_message
from wrong_impls._base import strom_step as _strom_step
from wrong_impls._base import vgc_step as _vgc_step


def _last(fn, *args):
    try:
        return fn(*args)
    except NonFiniteError as err:
        x = args[1] if err.name == "g" else args[2]
        if err.name in ("g", "s") and type(err) is NonFiniteError:
            last = int(np.flatnonzero(~np.isfinite(x))[-1])
            raise NonFiniteError(err.name, err.segment, last, float(x[last])) from None
        raise


def vgc_step(state, g, s, params):
    return _last(_vgc_step, state, g, s, params)


def strom_step(state, g, params):
    return _last(_strom_step, state, g, params)


__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
