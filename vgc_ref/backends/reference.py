"""The NumPy reference as a backend: the functions of vgc_ref itself, unchanged."""

from vgc_ref.aggregate import decode_accumulate
from vgc_ref.backends import Backend
from vgc_ref.criterion import accumulate, strom_step, vgc_step, vgc_step_scratch
from vgc_ref.encoding import encode_message
from vgc_ref.variance import conv_grad_var, dense_grad_var


def check_step(state, g, s=None) -> None:
    """Validate one step's inputs (:func:`vgc_ref.criterion.accumulate`) and discard the sums."""
    accumulate(state, g, s)


BACKEND = Backend(
    name="numpy",
    vgc_step=vgc_step,
    vgc_step_scratch=vgc_step_scratch,
    strom_step=strom_step,
    check_step=check_step,
    encode_message=encode_message,
    decode_accumulate=decode_accumulate,
    dense_grad_var=dense_grad_var,
    conv_grad_var=conv_grad_var,
)
