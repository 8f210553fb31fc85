"""Bug: g_W and s_W by BLAS (``x.T @ D``), which sums in an order of its own (fused
multiply-adds, blocks of samples) instead of the fixed order of docs/algorithm.md
section 2."""

from vgc_ref.variance import dense_grad_var_blas as dense_grad_var
from wrong_impls._base import decode_accumulate, decode_message, encode_message, strom_step, vgc_step

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
