"""Not a wrong implementation but an incomplete one: it defines only the two steps."""

from vgc_ref import strom_step, vgc_step

__all__ = ["strom_step", "vgc_step"]
