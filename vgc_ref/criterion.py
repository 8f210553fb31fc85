"""The send criterion and the residual update: one step on one segment.

This is the NumPy reference of docs/algorithm.md sections 3 and 4. Each function validates
every input first and raises before touching the state; then it computes the new r and
v in fresh arrays and writes them into the state at the very end.

VGC step, per element i, all float32, no fused multiply-add::

    1. r_i <- r_i + g_i ;  v_i <- v_i + s_i
    2. candidate_i  <=>  r_i * r_i > alpha * v_i  and  |r_i| >= tau
    3. e_i = rounded exponent of |r_i| (quantize.rounded_exponent); zero and subnormal
       r_i are not sendable
    4. E = max e_i over sendable candidates (0 when there is none); k_i = E - e_i;
       k_i > 15 is not sendable
    5. sent:     q_i = sign(r_i) * 2^(e_i - 127); v_i <- 0;
                 r_i <- r_i - q_i ("feedback", exact) or r_i <- 0 ("reset")
       not sent: v_i <- zeta * v_i
"""

from __future__ import annotations

import numpy as np

from vgc_ref import quantize
from vgc_ref.errors import AccumulatorOverflowError, InputError, NegativeVarianceError, NonFiniteError
from vgc_ref.packet import Codec, Packet
from vgc_ref.params import StromParams, TopKParams, VGCParams
from vgc_ref.state import SegmentState, check_segment_id, check_vector


def _first(mask: np.ndarray) -> int:
    """Index of the first True in a boolean array (which has one)."""
    return int(np.argmax(mask))


def check_finite(name: str, x: np.ndarray, segment: int) -> None:
    """Raise NonFiniteError naming the segment and the first NaN or infinity in ``x``."""
    bad = ~np.isfinite(x)
    if bad.any():
        i = _first(bad)
        raise NonFiniteError(name, segment, i, float(x[i]))


def accumulate(
    state: SegmentState, g: np.ndarray, s: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate one step's inputs and return step 1's new (r, v) without touching the state.

    ``s`` is None for the Strom step, which keeps no variance. Raises
    :class:`~vgc_ref.errors.InputError` for a wrong type, dtype or length,
    :class:`~vgc_ref.errors.NonFiniteError` for NaN or infinity in g or s,
    :class:`~vgc_ref.errors.NegativeVarianceError` for s < 0 and
    :class:`~vgc_ref.errors.AccumulatorOverflowError` when r + g or v + s overflows.
    """
    seg = state.segment_id
    check_vector("g", g, state.n)
    check_finite("g", g, seg)
    if s is not None:
        check_vector("s", s, state.n)
        check_finite("s", s, seg)
        negative = s < 0
        if negative.any():
            i = _first(negative)
            raise NegativeVarianceError(seg, i, float(s[i]))

    with np.errstate(over="ignore"):  # overflow is detected right below
        r = state.r + g  # float32[n], one rounded add per element
        v = None if s is None else state.v + s  # float32[n]
    if not np.isfinite(r).all():
        i = _first(~np.isfinite(r))
        raise AccumulatorOverflowError("r + g", seg, i, float(state.r[i]))
    if v is not None and not np.isfinite(v).all():
        i = _first(~np.isfinite(v))
        raise AccumulatorOverflowError("v + s", seg, i, float(state.v[i]))
    return r, v


def missing_variance() -> InputError:
    """The error of vgc_step given s = None (None means "no variance" only to Strom's checks).

    Every backend's vgc_step raises it after g's checks, where any other bad s is reported.
    """
    return InputError("s", "None", "must be a float32 array of the segment's length (vgc_step needs it)")


def vgc_step(state: SegmentState, g: np.ndarray, s: np.ndarray, params: VGCParams) -> Packet:
    """One VGC step on one segment: update ``state`` in place and return its packet.

    Parameters
    ----------
    state : SegmentState
        r and v of the segment, float32[n]; updated in place (only if no error is raised).
    g : numpy.ndarray
        float32[n] mini-batch gradient of the mean loss.
    s : numpy.ndarray
        float32[n] variance term (1/B^2) sum_z grad(l_z)^2, >= 0.
    params : VGCParams
        alpha, zeta, tau (tau > 0 gives the hybrid) and the residual mode.

    Returns
    -------
    Packet
        Codec VGC_Q4, param E, one word per sent element in increasing index order.
    """
    if not isinstance(params, VGCParams):
        raise TypeError(f"params must be VGCParams, not {type(params).__name__}")
    if s is None:
        accumulate(state, g, None)  # g's errors first
        raise missing_variance()
    # 1. Accumulate (validates everything; the state is untouched until the end).
    r, v = accumulate(state, g, s)

    # 2. Candidates: separately rounded float32 products, strict comparison.
    with np.errstate(over="ignore", under="ignore"):  # r*r may overflow to inf: it then compares greater
        candidate = (r * r > params.alpha32 * v) & (np.abs(r) >= params.tau32)

    return _quantize_and_update(state, r, v, candidate, params.zeta32, params.residual)


def vgc_step_scratch(
    state: SegmentState, g: np.ndarray, s: np.ndarray, params: VGCParams, out: SegmentState | None = None
) -> Packet:
    """:func:`vgc_step` for a caller that throws the stepped r and v away when the step raises.

    Without ``out``: ``state`` is stepped in place. On success, the same packet, r and v as
    :func:`vgc_step`; on error, the same error, after which r and v are unspecified (a
    backend may have stepped part of them).

    With ``out`` (a SegmentState of the same length that shares no memory with ``state``,
    ``g`` or ``s``, or ``state`` itself): ``state`` is only read, never written, and the
    new r and v go to ``out``: on success the packet of ``state``'s step (its segment id)
    and, in ``out``, the r and v that :func:`vgc_step` would have left in ``state``; on
    error the same error, ``state`` unchanged and ``out`` unspecified. ``out`` is checked
    before anything else (:func:`check_out`). The DDP hook steps its committed state into
    a spare this way: no copy of r and v per step, and no write to the committed state.

    Either way a backend may validate and write in one pass. The reference's is
    :func:`vgc_step` on a copy, which leaves ``out`` unchanged on error: more than the
    contract asks.
    """
    if not isinstance(params, VGCParams):
        raise TypeError(f"params must be VGCParams, not {type(params).__name__}")
    if out is None or out is state:
        return vgc_step(state, g, s, params)
    check_out(state, out, g, s)
    stepped = state.copy()
    packet = vgc_step(stepped, g, s, params)
    out.r[...] = stepped.r
    out.v[...] = stepped.v
    return packet


def check_out(state: SegmentState, out: SegmentState, g: np.ndarray, s: np.ndarray | None) -> None:
    """Raise InputError unless ``out`` can receive ``state``'s stepped r and v.

    ``out`` must be a SegmentState of ``state``'s length whose r and v share no memory
    with ``state``'s r and v, with ``g`` or with ``s`` (numpy.may_share_memory: bounds
    only, so arrays interleaved in one buffer are refused too).
    """
    if not isinstance(out, SegmentState):
        raise InputError("out", type(out).__name__, "must be a SegmentState (or None: step in place)")
    if out.n != state.n:
        raise InputError("out", f"length {out.n}", f"must be the state's length {state.n}")
    for mine in (out.r, out.v):
        for name, other in (("state.r", state.r), ("state.v", state.v), ("g", g), ("s", s)):
            if isinstance(other, np.ndarray) and np.may_share_memory(mine, other):
                raise InputError("out", f"r or v overlapping {name}", "must share no memory with it")


def _quantize_and_update(
    state: SegmentState,
    r: np.ndarray,
    v: np.ndarray | None,
    candidate: np.ndarray,
    zeta32: np.float32,
    residual: str,
) -> Packet:
    """Steps 3-5 of the VGC step: quantize the candidates, update r and v, write the state.

    ``r`` and ``v`` are step 1's new arrays (``v`` None for top-k, which keeps no
    variance); ``candidate`` is bool[n].
    """
    # 3. Rounded exponents; zeros and subnormals cannot be sent.
    e, normal = quantize.rounded_exponent(r)  # uint32[n], bool[n]
    sendable = candidate & normal

    # 4. The segment's largest exponent E, and k = E - e within the 4-bit code.
    E = int(e[sendable].max()) if sendable.any() else 0
    send = sendable & (e + quantize.MAX_K >= E)  # k_i = E - e_i <= 15
    index = np.flatnonzero(send)  # int64[count], increasing
    sign = quantize.sign_bits(r[index])  # uint32[count]
    k = np.uint32(E) - e[index]  # uint32[count]
    words = quantize.pack_vgc_words(index, sign, k)

    # 5. Residual and variance update.
    q = quantize.power_of_two(sign, e[index])  # float32[count]
    if residual == "feedback":
        r[index] = r[index] - q  # exact: q/2 <= |r_i| <= 2q
    else:
        r[index] = 0
    state.r[...] = r
    if v is not None:
        held = ~send
        v[held] = zeta32 * v[held]
        v[index] = 0
        state.v[...] = v
    return Packet(state.segment_id, state.n, Codec.VGC_Q4, E, words)


def strom_step(state: SegmentState, g: np.ndarray, params: StromParams) -> Packet:
    """One step of Strom's threshold baseline on one segment (docs/algorithm.md section 4).

    ``r <- r + g``; element i is sent when ``|r_i| >= tau``, as ``q_i = sign(r_i) * tau``,
    and ``r_i <- r_i - q_i`` (a rounded float32 subtraction). ``state.v`` is not used.

    Returns
    -------
    Packet
        Codec STROM, param the bits of float32 tau, words ``index << 1 | sign``.
    """
    if not isinstance(params, StromParams):
        raise TypeError(f"params must be StromParams, not {type(params).__name__}")
    r, _ = accumulate(state, g, None)
    index = np.flatnonzero(np.abs(r) >= params.tau32)  # int64[count], increasing
    sign = quantize.sign_bits(r[index])  # uint32[count]
    r[index] = r[index] - quantize.strom_values(params.tau32, sign)
    state.r[...] = r
    tau_bits = int(params.tau32.view(np.uint32))
    return Packet(state.segment_id, state.n, Codec.STROM, tau_bits, quantize.pack_strom_words(index, sign))


def dense_packet(segment_id: int, g: np.ndarray) -> Packet:
    """The uncompressed baseline's packet: all n float32 values of g (finite)."""
    segment_id = check_segment_id(segment_id)
    check_vector("g", g)
    check_finite("g", g, segment_id)
    return Packet(segment_id, g.shape[0], Codec.DENSE, 0, g.view(np.uint32).copy())


def topk_step(state: SegmentState, g: np.ndarray, params: TopKParams) -> Packet:
    """One step of the top-k baseline with error feedback (Deep Gradient Compression style).

    ``r <- r + g``; the ``params.count(n)`` elements of largest |r_i| are the candidates
    (ties broken by the lower index, so the choice is deterministic); they are quantized,
    sent and fed back exactly as in the VGC step (steps 3-5: powers of two, a shared E,
    k <= 15), so the packet is an ordinary VGC_Q4 packet. ``state.v`` is not used.
    """
    if not isinstance(params, TopKParams):
        raise TypeError(f"params must be TopKParams, not {type(params).__name__}")
    r, _ = accumulate(state, g, None)
    magnitude = np.abs(r)  # float32[n]
    order = np.lexsort((np.arange(state.n), -magnitude))  # largest |r| first, then lowest index
    candidate = np.zeros(state.n, bool)
    candidate[order[: params.count(state.n)]] = True
    return _quantize_and_update(state, r, None, candidate, np.float32(1), "feedback")
