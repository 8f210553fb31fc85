"""Hyperparameters, validated once and frozen (docs/algorithm.md section 2).

Each float hyperparameter is converted to float32 once, here; the step functions use
only the float32 values, so every backend multiplies by exactly the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vgc_ref.errors import HyperparameterError

#: Residual modes (docs/algorithm.md section 3): what happens to r_i when element i is sent.
RESIDUAL_MODES = ("feedback", "reset")


def _to_float32(name: str, value: object) -> np.float32:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise HyperparameterError(name, value, "must be a real number")
    if not math.isfinite(float(value)):
        raise HyperparameterError(name, value, "must be finite")
    with np.errstate(over="ignore"):
        value32 = np.float32(value)
    if not np.isfinite(value32):
        raise HyperparameterError(name, value, "overflows float32")
    return value32


@dataclass(frozen=True)
class VGCParams:
    """Hyperparameters of the VGC criterion (and of the hybrid, when tau > 0).

    Parameters
    ----------
    alpha : float
        Send element i when r_i^2 > alpha * v_i. Finite, > 0. Larger alpha sends less.
    zeta : float
        Decay of v for elements held back, 0 <= zeta <= 1.
    tau : float
        Extra magnitude floor |r_i| >= tau; 0 disables it (pure VGC), > 0 is the hybrid.
    residual : str
        "feedback" (r_i <- r_i - q_i after sending; conserves the gradient) or "reset"
        (r_i <- 0).

    Attributes ``alpha32``, ``zeta32`` and ``tau32`` hold the float32 values the
    arithmetic uses.
    """

    alpha: float = 2.0
    zeta: float = 0.999
    tau: float = 0.0
    residual: str = "feedback"
    alpha32: np.float32 = field(init=False, repr=False, compare=False)
    zeta32: np.float32 = field(init=False, repr=False, compare=False)
    tau32: np.float32 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        alpha32 = _to_float32("alpha", self.alpha)
        if not alpha32 > 0:
            raise HyperparameterError("alpha", self.alpha, "must be > 0 (as float32)")
        zeta32 = _to_float32("zeta", self.zeta)
        if not 0 <= zeta32 <= 1:
            raise HyperparameterError("zeta", self.zeta, "must satisfy 0 <= zeta <= 1")
        tau32 = _to_float32("tau", self.tau)
        if not tau32 >= 0:
            raise HyperparameterError("tau", self.tau, "must be >= 0")
        if self.residual not in RESIDUAL_MODES:
            raise HyperparameterError("residual", self.residual, f"must be one of {RESIDUAL_MODES}")
        object.__setattr__(self, "alpha32", alpha32)
        object.__setattr__(self, "zeta32", zeta32)
        object.__setattr__(self, "tau32", tau32)


@dataclass(frozen=True)
class StromParams:
    """Hyperparameter of Strom's threshold baseline (docs/algorithm.md section 4).

    Parameters
    ----------
    tau : float
        Send element i when |r_i| >= tau, as the value sign(r_i) * tau. Finite, > 0
        (as float32; a tau that rounds to 0 in float32 is rejected).
    """

    tau: float
    tau32: np.float32 = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tau32 = _to_float32("tau", self.tau)
        if not tau32 > 0:
            raise HyperparameterError("tau", self.tau, "must be > 0 (as float32)")
        object.__setattr__(self, "tau32", tau32)


@dataclass(frozen=True)
class TopKParams:
    """Hyperparameter of the top-k baseline (Deep Gradient Compression style).

    Parameters
    ----------
    fraction : float
        Share of each segment's elements selected per step, 0 < fraction <= 1; the
        segment selects ceil(fraction * n) elements (at least 1 when n > 0).
    """

    fraction: float

    def __post_init__(self) -> None:
        if isinstance(self.fraction, (bool, np.bool_)) or not isinstance(
            self.fraction, (int, float, np.floating)
        ):
            raise HyperparameterError("fraction", self.fraction, "must be a real number")
        if not (math.isfinite(self.fraction) and 0 < self.fraction <= 1):
            raise HyperparameterError("fraction", self.fraction, "must satisfy 0 < fraction <= 1")

    def count(self, n: int) -> int:
        """How many elements a segment of length n selects."""
        return min(n, max(1, math.ceil(self.fraction * n))) if n > 0 else 0
