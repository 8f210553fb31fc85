"""One worker's compressor: every segment's state, one method, one message per step.

This is a convenience over the per-segment step functions in :mod:`vgc_ref.criterion`:
it owns a :class:`~vgc_ref.state.SegmentState` per segment (ids 0 .. S-1), validates
the whole step's inputs before any segment's state changes, and returns the packets
(or the encoded message) of the step.

Methods: ``none`` (dense float32, the uncompressed baseline), ``vgc`` (alpha, zeta),
``strom`` (tau), ``hybrid`` (VGC's criterion with tau > 0) and ``topk`` (the largest
fraction of |r| per segment, quantized like VGC; a baseline in the style of Deep
Gradient Compression, always run by the NumPy reference).

With the numba-cuda backend, the states of vgc, hybrid and strom live on the device
(:class:`~vgc_ref.backends.numba_cuda.DeviceSegmentState`): r and v stay in device memory
from step to step, g and s may be host or device arrays, and only the packets' words come
back. The messages are the same bytes as every other backend's. :meth:`Compressor.host_states`
copies the states to the host and :meth:`Compressor.load_states` copies host states in
(a checkpoint's save and restore).
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
    device_state : bool, optional
        Keep r and v in device memory between steps (``states`` are then
        DeviceSegmentStates). Default: yes for the numba-cuda backend with vgc, hybrid or
        strom, no otherwise; True with another backend or method is a HyperparameterError.
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
        device_state: bool | None = None,
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
        on_device = self.backend.name == "numba-cuda" and method in ("vgc", "hybrid", "strom")
        if device_state is None:
            device_state = on_device
        elif device_state and not on_device:
            raise HyperparameterError(
                "device_state", device_state, "needs backend 'numba-cuda' and method vgc, hybrid or strom"
            )
        #: Whether ``states`` hold r and v in device memory (numba-cuda's DeviceSegmentState).
        self.device_state = bool(device_state)
        self.states: list
        if self.device_state:
            from vgc_ref.backends.numba_cuda import DeviceSegmentState

            self.states = [DeviceSegmentState.zeros(n, j) for j, n in enumerate(sizes)]
        else:
            self.states = [SegmentState.zeros(n, j) for j, n in enumerate(sizes)]

    @property
    def sizes(self) -> list[int]:
        """n of each segment."""
        return [st.n for st in self.states]

    def host_states(self) -> list[SegmentState]:
        """A host copy of every segment's state (copied from the device for device states)."""
        return [st.copy() if isinstance(st, SegmentState) else st.to_host() for st in self.states]

    def load_states(self, states: Sequence[SegmentState]) -> None:
        """Replace every segment's r and v by copies of ``states`` (host states, in segment order).

        Each must have its segment's id and length (InputError naming ``states[j]``
        otherwise, and nothing is replaced); a device-state Compressor copies them to
        the device. With :meth:`host_states`, this is how a checkpoint saves and restores.
        """
        if len(states) != len(self.states):
            raise InputError(
                "states", f"{len(states)} states", f"must hold one per segment ({len(self.states)})"
            )
        for j, (old, st) in enumerate(zip(self.states, states)):
            if not isinstance(st, SegmentState):
                raise InputError(f"states[{j}]", type(st).__name__, "must be a SegmentState")
            if (st.segment_id, st.n) != (old.segment_id, old.n):
                raise InputError(
                    f"states[{j}]",
                    f"segment {st.segment_id} of length {st.n}",
                    f"must be segment {old.segment_id} of length {old.n}",
                )
        if self.device_state:
            from vgc_ref.backends.numba_cuda import DeviceSegmentState

            self.states = [DeviceSegmentState.from_host(st) for st in states]
        else:
            self.states = [st.copy() for st in states]

    @property
    def uses_variance(self) -> bool:
        """Whether :meth:`compress` needs the variance terms (vgc, hybrid)."""
        return self.method in ("vgc", "hybrid")

    def _check_lists(self, grads: Sequence[np.ndarray], variances: Sequence[np.ndarray] | None) -> None:
        """One g per segment, and one s per segment where the method needs s."""
        if len(grads) != len(self.states):
            raise InputError(
                "grads", f"{len(grads)} arrays", f"must hold one per segment ({len(self.states)})"
            )
        if self.uses_variance:
            if variances is None or len(variances) != len(self.states):
                got = "None" if variances is None else f"{len(variances)} arrays"
                raise InputError("variances", got, f"method {self.method!r} needs one per segment")

    def _check_all(self, grads: Sequence[np.ndarray], variances: Sequence[np.ndarray] | None) -> None:
        """Validate every segment's inputs (including overflow) before any state changes."""
        self._check_lists(grads, variances)
        for j, st in enumerate(self.states):
            if self.method == "none":
                check_vector("g", grads[j], st.n)
                check_finite("g", grads[j], st.segment_id)
            elif self.method == "topk":
                accumulate(st, grads[j], None)
            else:
                self.backend.check_step(st, grads[j], variances[j] if self.uses_variance else None)

    def compress(
        self,
        grads: Sequence[np.ndarray],
        variances: Sequence[np.ndarray] | None = None,
        *,
        atomic: bool = True,
        into: Sequence[SegmentState] | None = None,
    ) -> list[Packet]:
        """One step: update every segment's state and return the packets, in segment order.

        ``atomic`` (the default): every segment's inputs are validated first, so an error
        changes no segment. ``atomic=False`` is for callers that step scratch copies of
        the states and throw them all away on error, as the DDP hook does: no first
        pass over every segment, and vgc and hybrid segments are stepped with the
        backend's ``vgc_step_scratch`` (numba-cpu: one pass over g, s, r and v). The
        results are the same; on error the same error is raised, but the states are
        unspecified: the segments before keep their step, and the failing one may be
        partly stepped.

        ``into`` (host states, with ``atomic=False`` only): one SegmentState per segment,
        of the segment's id and length, that receives the step's r and v; ``self.states``
        are read and never written, so an error leaves them as they were. vgc and hybrid
        step straight into them (``vgc_step_scratch``'s ``out``: no copy of r and v); the
        other methods copy each state into its target and step that. The DDP hook steps
        its committed states into spares this way.

        With the numba-cuda backend, g and s may be device arrays (anything with
        ``__cuda_array_interface__``); none and topk copy them to the host first.
        """
        if self.backend.name == "numba-cuda" and self.method in ("none", "topk"):
            grads = [_on_host(g) for g in grads]
        if into is not None:
            self._check_into(into, atomic)
        if atomic or self.method in ("none", "topk"):
            self._check_all(grads, variances)
        else:
            self._check_lists(grads, variances)
        if self.method == "none":
            return [dense_packet(st.segment_id, g) for st, g in zip(self.states, grads)]
        states = self.states
        if into is not None and not self.uses_variance:  # steps without an out: copy, step the copy
            for st, target in zip(states, into):
                target.r[...] = st.r
                target.v[...] = st.v
            states = into
        if self.method == "topk":
            return [topk_step(st, g, self.params) for st, g in zip(states, grads)]
        if self.method == "strom":
            step = self.backend.strom_step
            return [step(st, g, self.params) for st, g in zip(states, grads)]
        if atomic:
            step = self.backend.vgc_step
            return [step(st, g, s, self.params) for st, g, s in zip(states, grads, variances)]
        step = self.backend.vgc_step_scratch
        targets = into if into is not None else states
        return [step(st, g, s, self.params, out) for st, g, s, out in zip(states, grads, variances, targets)]

    def _check_into(self, into: Sequence[SegmentState], atomic: bool) -> None:
        """``into`` holds one host state per segment, of its id and length (compress)."""
        if atomic or self.device_state:
            raise InputError("into", "given", "needs atomic=False and host states")
        if len(into) != len(self.states):
            raise InputError("into", f"{len(into)} states", f"must hold one per segment ({len(self.states)})")
        for j, (st, target) in enumerate(zip(self.states, into)):
            if not isinstance(target, SegmentState) or (target.segment_id, target.n) != (st.segment_id, st.n):
                raise InputError(
                    f"into[{j}]",
                    repr(target)[:60],
                    f"must be a SegmentState of segment {st.segment_id}, length {st.n}",
                )
            if target is st:
                raise InputError(
                    f"into[{j}]", "the segment's own state", "must be another state (or leave into out)"
                )

    def message(self, grads: Sequence[np.ndarray], variances: Sequence[np.ndarray] | None = None) -> bytes:
        """One step, encoded: ``encode_message(self.compress(grads, variances))``."""
        return encode_message(self.compress(grads, variances))


def _on_host(x):
    """x itself, or a host copy of x when it is a device array (numba-cuda backend only)."""
    from vgc_ref.backends import numba_cuda

    return numba_cuda._as_device(x).copy_to_host() if numba_cuda.is_device_array(x) else x
