"""Bug: the variance term of W is (x^T D)^2, the square of the mean gradient, instead of
(x*x)^T (D*D), the mean of the per-sample squares."""

from vgc_ref.variance import dense_grad_var as _dense_grad_var
from wrong_impls._base import decode_accumulate, decode_message, encode_message, strom_step, vgc_step


def dense_grad_var(x, delta):
    g_w, _, g_b, s_b = _dense_grad_var(x, delta)
    return g_w, g_w * g_w, g_b, s_b


__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
