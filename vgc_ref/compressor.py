"""One worker's compressor: every segment's state, one method, one message per step.

This is a convenience over the per-segment step functions in :mod:`vgc_ref.criterion`:
it owns a :class:`~vgc_ref.state.SegmentState` per segment (ids 0 .. S-1), validates
the whole step's inputs before any segment's state changes, and returns the packets
(or the encoded message) of the step.

Methods: ``none`` (dense float32, the uncompressed baseline), ``vgc`` (alpha, zeta),
``strom`` (tau), ``hybrid`` (VGC's criterion with tau > 0) and ``topk`` (the largest
fraction of |r| per segment, quantized like VGC; a baseline in the style of Deep
Gradient Compression, always run by the NumPy reference).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vgc_ref.backends import Backend, get_backend
from vgc_ref.criterion import accumulate, check_finite, dense_packet, topk_step
from vgc_ref.encoding import encode_message
from vgc_ref.errors import HyperparameterError, InputError
from vgc_ref.packet import Packet
from vgc_ref.params import StromParams, TopKParams, VGCParams
from vgc_ref.state import SegmentState, check_vector

METHODS = ("none", "vgc", "strom", "hybrid", "topk")


class Compressor:
    """Compress one worker's gradients, segment by segment, with one method.

    Parameters
    ----------
    sizes : sequence of int
        n of each segment; segment j gets id j.
    method : str
        "none", "vgc", "strom" or "hybrid".
    alpha, zeta, residual :
        VGC hyperparameters (vgc, hybrid); see :class:`~vgc_ref.params.VGCParams`.
    tau : float
        Threshold: required > 0 for strom and hybrid, must be 0 for vgc.
    fraction : float
        Share of each segment sent by topk (0 < fraction <= 1).
    backend : str or Backend, optional
        Which implementation runs the steps (see :mod:`vgc_ref.backends`); default
        $VGC_BACKEND or "numpy". Every backend gives the same bytes.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        method: str = "vgc",
        *,
        alpha: float = 2.0,
        zeta: float = 0.999,
        tau: float = 0.0,
        residual: str = "feedback",
        fraction: float = 0.01,
        backend: str | Backend | None = None,
    ) -> None:
        self.backend = get_backend(backend)
        if method not in METHODS:
            raise HyperparameterError("method", method, f"must be one of {METHODS}")
        if method == "vgc" and tau != 0:
            raise HyperparameterError("tau", tau, "must be 0 for method 'vgc' (use 'hybrid' for tau > 0)")
        if method in ("strom", "hybrid") and not tau > 0:
            raise HyperparameterError("tau", tau, f"must be > 0 for method {method!r}")
        self.method = method
        self.params: VGCParams | StromParams | TopKParams | None
        if method in ("vgc", "hybrid"):
            self.params = VGCParams(alpha=alpha, zeta=zeta, tau=tau, residual=residual)
        elif method == "strom":
            self.params = StromParams(tau=tau)
        elif method == "topk":
            self.params = TopKParams(fraction=fraction)
        else:
            self.params = None
        self.states = [SegmentState.zeros(n, j) for j, n in enumerate(sizes)]

    @property
    def sizes(self) -> list[int]:
        """n of each segment."""
        return [st.n for st in self.states]

    @property
    def uses_variance(self) -> bool:
        """Whether :meth:`compress` needs the variance terms (vgc, hybrid)."""
        return self.method in ("vgc", "hybrid")

    def _check_all(self, grads: Sequence[np.ndarray], variances: Sequence[np.ndarray] | None) -> None:
        """Validate every segment's inputs (including overflow) before any state changes."""
        if len(grads) != len(self.states):
            raise InputError(
                "grads", f"{len(grads)} arrays", f"must hold one per segment ({len(self.states)})"
            )
        if self.uses_variance:
            if variances is None or len(variances) != len(self.states):
                got = "None" if variances is None else f"{len(variances)} arrays"
                raise InputError("variances", got, f"method {self.method!r} needs one per segment")
        for j, st in enumerate(self.states):
            if self.method == "none":
                check_vector("g", grads[j], st.n)
                check_finite("g", grads[j], st.segment_id)
            elif self.method == "topk":
                accumulate(st, grads[j], None)
            else:
                self.backend.check_step(st, grads[j], variances[j] if self.uses_variance else None)

    def compress(
        self, grads: Sequence[np.ndarray], variances: Sequence[np.ndarray] | None = None
    ) -> list[Packet]:
        """One step: update every segment's state and return the packets, in segment order."""
        self._check_all(grads, variances)
        if self.method == "none":
            return [dense_packet(st.segment_id, g) for st, g in zip(self.states, grads)]
        if self.method == "topk":
            return [topk_step(st, g, self.params) for st, g in zip(self.states, grads)]
        if self.method == "strom":
            step = self.backend.strom_step
            return [step(st, g, self.params) for st, g in zip(self.states, grads)]
        step = self.backend.vgc_step
        return [step(st, g, s, self.params) for st, g, s in zip(self.states, grads, variances)]

    def message(self, grads: Sequence[np.ndarray], variances: Sequence[np.ndarray] | None = None) -> bytes:
        """One step, encoded: ``encode_message(self.compress(grads, variances))``."""
        return encode_message(self.compress(grads, variances))
