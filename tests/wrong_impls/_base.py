"""Building blocks of the deliberately wrong implementations.

Each wrong implementation is the reference with exactly one bug, so the property that
catches it is the one that names that rule. The step functions here are copies of
:func:`vgc_ref.criterion.vgc_step` and :func:`vgc_ref.criterion.strom_step` with a
switch per bug (default: the correct behaviour); decoder bugs patch one private check of
:mod:`vgc_ref.encoding` for the duration of the wrong implementation's own call only, so
the reference the suite compares against is never affected.
"""

from __future__ import annotations

import contextlib

import numpy as np

from vgc_ref import encoding, quantize
from vgc_ref.aggregate import _check_layout, _check_out
from vgc_ref.criterion import accumulate
from vgc_ref.encoding import decode_message, encode_message
from vgc_ref.errors import FormatError, InputError
from vgc_ref.packet import Codec, Packet, packet_entries
from vgc_ref.params import StromParams, VGCParams
from vgc_ref.variance import dense_grad_var

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "make_aggregate",
    "make_decoder",
    "make_strom_step",
    "make_vgc_step",
    "strom_step",
    "vgc_step",
]


def make_vgc_step(
    *,
    strict=True,
    sqrt2_mantissa=quantize.SQRT2_MANTISSA,
    max_k=quantize.MAX_K,
    max_exponent=quantize.MAX_EXPONENT,
    decay_sent=False,
    honour_reset=True,
    criterion=None,
    tau=None,
    decay=None,
    flush_subnormals=False,
):
    """A copy of the reference VGC step; each keyword is one place a bug can hide.

    ``criterion(r, v, params)`` replaces ``r * r > alpha32 * v``; ``tau(params)`` the
    float32 tau; ``decay(params, v)`` the held elements' ``zeta32 * v``;
    ``flush_subnormals`` flushes every subnormal result to zero (FTZ/DAZ).
    """

    def ftz(x):
        if flush_subnormals:
            x = np.where(np.abs(x) < np.float32(2.0**-126), np.float32(0) * x, x).astype(np.float32)
        return x

    def vgc_step(state, g, s, params):
        if not isinstance(params, VGCParams):
            raise TypeError("params must be VGCParams")
        r, v = accumulate(state, g, s)
        r, v = ftz(r), ftz(v)
        with np.errstate(over="ignore", under="ignore"):
            lhs, rhs = ftz(r * r), ftz(params.alpha32 * v)
            above = lhs > rhs if strict else lhs >= rhs
            if criterion is not None:
                above = criterion(r, v, params)
            floor = params.tau32 if tau is None else tau(params)
            candidate = above & (np.abs(r) >= floor)
        bits = r.view(np.uint32)
        ef = (bits >> np.uint32(23)) & np.uint32(0xFF)
        mf = bits & np.uint32(0x7FFFFF)
        e = np.minimum(ef + (mf >= sqrt2_mantissa).astype(np.uint32), np.uint32(max_exponent))
        sendable = candidate & (ef != 0)
        E = int(e[sendable].max()) if sendable.any() else 0
        send = sendable & (e + max_k >= E)
        index = np.flatnonzero(send)
        sign = bits[index] >> np.uint32(31)
        k = np.uint32(E) - e[index]
        words = quantize.pack_vgc_words(index, sign, k)
        q = quantize.power_of_two(sign, e[index])
        if params.residual == "feedback" or not honour_reset:
            r[index] = r[index] - q
        else:
            r[index] = 0
        held = ~send
        v[held] = ftz(params.zeta32 * v[held]) if decay is None else decay(params, v[held])
        if decay_sent:
            v[index] = params.zeta32 * v[index]
        else:
            v[index] = 0
        state.r[...] = r
        state.v[...] = v
        return Packet(state.segment_id, state.n, Codec.VGC_Q4, E, words)

    return vgc_step


def make_strom_step(*, inclusive=True, subtract=None, touch_v=False):
    """A copy of the reference Strom step; ``inclusive=False`` sends only |r| > tau;
    ``subtract(r, sign, params)`` replaces ``r - sign * tau32``; ``touch_v`` zeroes v."""

    def strom_step(state, g, params):
        if not isinstance(params, StromParams):
            raise TypeError("params must be StromParams")
        r, _ = accumulate(state, g, None)
        mag = np.abs(r)
        index = np.flatnonzero(mag >= params.tau32 if inclusive else mag > params.tau32)
        sign = quantize.sign_bits(r[index])
        if subtract is None:
            r[index] = r[index] - quantize.strom_values(params.tau32, sign)
        else:
            r[index] = subtract(r[index], sign, params)
        state.r[...] = r
        if touch_v:
            state.v[index] = 0
        tau_bits = int(params.tau32.view(np.uint32))
        return Packet(
            state.segment_id, state.n, Codec.STROM, tau_bits, quantize.pack_strom_words(index, sign)
        )

    return strom_step


@contextlib.contextmanager
def _patched(module, name, value):
    if not hasattr(module, name):  # the reference was refactored: fail loudly, never silently pass
        raise AttributeError(f"{module.__name__}.{name} no longer exists; update tests/wrong_impls/_base.py")
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


def make_decoder(**patches):
    """The reference decoder with private checks of vgc_ref.encoding replaced during the call."""

    def decode(data):
        with contextlib.ExitStack() as stack:
            for name, value in patches.items():
                stack.enter_context(_patched(encoding, name, value))
            return decode_message(data)

    return decode


def make_aggregate(
    decode=decode_message,
    *,
    reverse=False,
    start_from_first_rank=False,
    reciprocal=False,
    write_early=False,
    float64=False,
    check_out=True,
):
    """A copy of the reference decode_accumulate with the chosen bug."""

    def decode_accumulate(messages, sizes, out=None):
        sizes = [int(n) for n in sizes]
        if write_early:  # bug: decodes rank by rank and writes each partial sum straight into out
            _check_out(out, sizes)
            acc = [np.zeros(n, np.float32) for n in sizes] if out is None else out
            for a in acc:
                a[...] = 0
            for message in messages:
                packets = decode_message(message)
                _check_layout([packets], sizes)
                for p in packets:
                    index, value = packet_entries(p)
                    acc[p.segment_id][index] += value
            if not messages:
                raise InputError("messages", "0 messages", "needs at least one worker's message")
            for a in acc:
                a[...] = a / np.float32(len(messages))
            return list(acc)
        packet_lists = []
        for rank, message in enumerate(messages):
            try:
                packet_lists.append(decode(message))
            except FormatError as err:
                wrapped = FormatError(err.field, err.offset, f"{err.reason} (message of rank {rank})")
                wrapped.rank = rank
                raise wrapped from err
        if not packet_lists:
            raise InputError("messages", "0 messages", "needs at least one worker's message")
        _check_layout(packet_lists, sizes)
        if check_out:
            _check_out(out, sizes)
        acc = [np.zeros(n, np.float64 if float64 else np.float32) for n in sizes]
        order = packet_lists[::-1] if reverse else packet_lists
        for rank, packets in enumerate(order):
            for p in packets:
                index, value = packet_entries(p)
                a = acc[p.segment_id]
                if start_from_first_rank and rank == 0:
                    a[index] = value
                else:
                    a[index] = a[index] + value
        p32 = np.float32(len(packet_lists))
        g_hat = [a * (np.float32(1) / p32) if reciprocal else (a / p32).astype(np.float32) for a in acc]
        if out is None:
            return g_hat
        for buf, g in zip(out, g_hat):
            buf[...] = g
        return list(out)

    return decode_accumulate


vgc_step = make_vgc_step()
strom_step = make_strom_step()
decode_accumulate = make_aggregate()


def make_blind_decoder(clear):
    """The reference decoder that does not see some bits: ``clear(buf, segments)`` zeroes them in
    a copy (the CRC is recomputed when the original one was right, so only the blind check
    can notice)."""
    import zlib

    def decode(data):
        buf = bytearray(data)
        try:
            segments = encoding._read_frame(bytes(buf))
        except FormatError:
            segments = None
        if segments is not None:
            crc_ok = zlib.crc32(bytes(buf[:-4])) == int.from_bytes(buf[-4:], "little")
            clear(buf, segments)
            if crc_ok:
                buf[-4:] = zlib.crc32(bytes(buf[:-4])).to_bytes(4, "little")
        return decode_message(bytes(buf))

    return decode
