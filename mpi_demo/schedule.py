"""The learning-rate schedule: the float32 learning rate of every step.

docs/demo.md, "Arithmetic of one step", step 11 defines it; every operation here is one
IEEE float64 operation on Python floats (no library function, no fused multiply-add), and
the result is rounded once to float32, so the schedule is the same on every machine:

* ``constant``: lr.
* ``step``: lr for the first half of the planned steps, lr * 0.1 from the half, lr * 0.01
  from three quarters (the tenfold decays of the classic ImageNet schedule).
* ``cosine``: lr * 0.5 * (1 + cos(pi * t / T)), with cos evaluated by :func:`cos64`.

``t`` counts steps from 0 and ``T`` is the planned number of steps (epochs * steps per
epoch), also when ``--steps`` stops the run earlier, so that a shortened run is a prefix
of the full one and a resumed run continues on the same curve.
"""

from __future__ import annotations

import numpy as np

SCHEDULES = ("constant", "step", "cosine")

#: pi as the float64 nearest to it (0x400921FB54442D18).
PI = 3.141592653589793
#: Terms of the cosine series: enough for 1 ulp-level accuracy on [0, pi] in float64.
COS_TERMS = 16


def _cos_coefficients() -> tuple[float, ...]:
    """c_0 = 1, c_k = c_{k-1} / ((2k - 1) * 2k): the series' coefficients, computed once."""
    c = [1.0]
    for k in range(1, COS_TERMS):
        c.append(c[-1] / float((2 * k - 1) * (2 * k)))
    return tuple(c)


_COS_COEFFICIENTS = _cos_coefficients()


def cos64(x: float) -> float:
    """cos(x) for 0 <= x <= pi as a fixed sequence of float64 operations.

    The Taylor series sum_{k=0}^{15} (-1)^k x^(2k) / (2k)!, with c_0 = 1 and
    c_k = c_{k-1} / ((2k - 1) * 2k) (each a float64 division by an exact integer), summed by
    Horner's rule from the highest term down: y = x * x, acc = c_15, then for k = 14 .. 0:
    acc = c_k - y * acc (the product rounded, then the difference). Within 1e-15 of the
    true cosine on [0, pi]; what matters is that it is the same on every machine.
    """
    c = _COS_COEFFICIENTS
    y = x * x
    acc = c[COS_TERMS - 1]
    for k in range(COS_TERMS - 2, -1, -1):
        acc = c[k] - y * acc
    return acc


def factor(schedule: str, t: int, total: int) -> float:
    """The float64 factor of step ``t`` (0-based) out of ``total`` planned steps."""
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        if 2 * t < total:
            return 1.0
        if 4 * t < 3 * total:
            return 0.1
        return 0.01
    if schedule == "cosine":
        return 0.5 * (1.0 + cos64(PI * float(t) / float(total)))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; one of {', '.join(SCHEDULES)}")


def lr_at(lr: float, schedule: str, t: int, total: int) -> np.float32:
    """float32(lr * factor): the learning rate of step ``t``. ``lr`` is the float64 of
    ``--lr``; for ``constant`` this is float32(lr), as before schedules existed."""
    return np.float32(lr * factor(schedule, t, total))
