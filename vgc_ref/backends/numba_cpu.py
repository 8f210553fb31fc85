"""Numba CPU backend: fused, parallel kernels with the NumPy reference's exact results.

Every public function here has the signature of its reference twin and gives
byte-identical packets and bit-identical r, v and g_hat (tests/test_backends.py checks it
against the reference on random and edge inputs, step after step).

How a step runs (VGC; Strom is the same with fewer fields)::

    Python   check types, dtypes and lengths (Numba does not check bounds)
    pass 1   read g, s, r, v chunk by chunk, in parallel, writing nothing:
             - does the chunk hold any bad input? then, for that chunk only, the first
               bad index of each check (g finite, s finite, s >= 0, r + g, v + s)
             - the largest |r| among the chunk's sendable candidates (as bits: the
               rounded exponent is monotone in the bits of |r|)
    Python   the first error in the reference's order (lowest index within a check) is
             raised here: nothing has been written yet, so the state is unchanged.
             E = the rounded exponent of the largest |r|; "sendable with k <= 15 and
             |r| >= tau" becomes one float32 threshold on |r|.
    pass 2   read g, s, r, v again, in parallel, write r and v, and append each chunk's
             words to its own stretch of a scratch buffer (a vectorized loop over a
             sub-block, then a compaction of the flagged words); count per chunk.
    gather   an exclusive prefix sum of the counts, then each chunk's words are copied
             to their place: increasing index order, whatever the thread timing.

Both passes recompute r + g and v + s instead of storing them: reading 16 bytes per
element twice costs less than writing 8 and reading them back, and the state is only
ever written in pass 2.

Arithmetic: all kernels are compiled with ``fastmath=False`` (Numba's default), so LLVM
may not contract a multiply and an add into an FMA, reassociate, or assume finite
values. The criterion's float32 operands stay float32: hyperparameters are passed as
numpy.float32 and the only literals are integers. docs/performance.md records the check
of the generated assembly (no ``vfmadd`` in these kernels).

The dense-layer gradient and variance term use the reference (two BLAS matrix products);
no hand-written CPU kernel beats OpenBLAS there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit, prange

from vgc_ref import quantize
from vgc_ref.aggregate import _check_layout, _check_out
from vgc_ref.backends import Backend
from vgc_ref.criterion import check_finite
from vgc_ref.encoding import decode_message
from vgc_ref.errors import (
    AccumulatorOverflowError,
    FormatError,
    InputError,
    NegativeVarianceError,
    NonFiniteError,
)
from vgc_ref.packet import Codec, Packet
from vgc_ref.params import StromParams, VGCParams
from vgc_ref.state import SegmentState, check_vector
from vgc_ref.variance import dense_grad_var

#: Elements per chunk of a parallel pass (256 KiB of float32 per array).
CHUNK = 1 << 16
#: Error checks in the reference's order (criterion.accumulate); columns of ``bad``.
G_NONFINITE, S_NONFINITE, S_NEGATIVE, RG_OVERFLOW, VS_OVERFLOW = range(5)
N_CHECKS = 5

_JIT = {"cache": True, "fastmath": False, "nogil": True}

SQRT2_MANTISSA = quantize.SQRT2_MANTISSA
MAX_EXPONENT = quantize.MAX_EXPONENT
MAX_K = quantize.MAX_K


# --------------------------------------------------------------------------------------
# Scalar helpers (inlined into the kernels)
# --------------------------------------------------------------------------------------

F32_MAX = np.float32(np.finfo(np.float32).max)
F32_ZERO = np.float32(0)
U32_ABS = np.uint32(0x7FFFFFFF)
U32_SIGN = np.uint32(0x80000000)
U32_EXPONENT = np.uint32(0x7F800000)
#: Adding this to the bits of |r| carries into the exponent field exactly when the
#: mantissa is >= SQRT2_MANTISSA, so ``(bits(|r|) + ROUND_UP) >> 23`` is the rounded
#: exponent e of quantize.rounded_exponent (before the clamp to 254).
ROUND_UP = np.uint32((1 << 23) - SQRT2_MANTISSA)
E_CLAMP = np.uint32(MAX_EXPONENT << 23)
#: Bits of the smallest normal float32; e is only defined (sendable) from here on.
SMALLEST_NORMAL_BITS = 1 << 23
#: Words are made in sub-blocks this long: a vectorized loop, then compaction.
SUB = 2048


@njit(inline="always", **_JIT)
def _bits(x):
    """uint32 bit pattern of a float32 scalar."""
    return np.float32(x).view(np.uint32)


@njit(inline="always", **_JIT)
def _float(bits):
    """float32 with the given uint32 bit pattern."""
    return np.uint32(bits).view(np.float32)


@njit(inline="always", **_JIT)
def _exponent_field(abs_bits):
    """quantize.rounded_exponent of |r| (from its bits), in place in bits 30..23."""
    return min(abs_bits + ROUND_UP, E_CLAMP) & U32_EXPONENT


def _send_threshold(E: int, tau: np.float32) -> np.float32:
    """Smallest |r| a candidate needs to be sent, given E: one float32 comparison.

    Sendable means normal (bits >= 2^23) with k = E - e <= 15, i.e. e >= E - 15, i.e.
    bits(|r|) + ROUND_UP >= (E - 15) << 23; and |r| >= tau. With E = 0 nothing is sent.
    """
    if E == 0:
        return np.float32(np.inf)
    e_min = E - MAX_K
    low = max((e_min << 23) - int(ROUND_UP), SMALLEST_NORMAL_BITS)
    return max(np.uint32(low).view(np.float32), np.float32(tau))


def _largest_exponent(max_bits: int) -> int:
    """E from the largest |r| bits among sendable candidates (0: there is none)."""
    if max_bits < SMALLEST_NORMAL_BITS:
        return 0
    return min((max_bits + int(ROUND_UP)) >> 23, MAX_EXPONENT)


# --------------------------------------------------------------------------------------
# VGC step kernels
# --------------------------------------------------------------------------------------


@njit(**_JIT)
def _first_bad(g, s, r, v, lo, hi, bad_row):
    """Slow path for a chunk with bad input: the first index of each check (s may be g)."""
    for i in range(lo, hi):
        gi = g[i]
        si = s[i]
        if not abs(gi) <= F32_MAX and bad_row[G_NONFINITE] < 0:
            bad_row[G_NONFINITE] = i
        if not abs(si) <= F32_MAX and bad_row[S_NONFINITE] < 0:
            bad_row[S_NONFINITE] = i
        if si < 0 and bad_row[S_NEGATIVE] < 0:
            bad_row[S_NEGATIVE] = i
        if not abs(r[i] + gi) <= F32_MAX and bad_row[RG_OVERFLOW] < 0:
            bad_row[RG_OVERFLOW] = i
        if not abs(v[i] + si) <= F32_MAX and bad_row[VS_OVERFLOW] < 0:
            bad_row[VS_OVERFLOW] = i


@njit(**_JIT)
def _vgc_scan_chunk(g, s, r, v, alpha, tau):
    """Pass 1 on one chunk: (all inputs good, largest bits of |r| over sendable candidates)."""
    ok = True
    max_bits = np.uint32(0)
    for i in range(g.shape[0]):
        si = s[i]
        ri = r[i] + g[i]  # float32
        vi = v[i] + si  # float32
        ar = abs(ri)
        # Non-finite g or s, negative s, or an overflowing sum all show up here (a NaN
        # compares false); which one, and where, is found by _first_bad.
        ok = ok & (ar <= F32_MAX) & (abs(vi) <= F32_MAX) & (si >= 0)
        candidate = (ri * ri > alpha * vi) & (ar >= tau)
        b = _bits(ar) * np.uint32(candidate)  # a multiply, not a branch: vectorizes
        max_bits = max_bits if max_bits > b else b
    return ok, max_bits


@njit(parallel=True, **_JIT)
def _vgc_scan(g, s, r, v, alpha, tau, chunk, bad, max_bits):
    """Pass 1 (read-only). bad: int64[C, 5] first bad index per check, -1 = none."""
    n = g.shape[0]
    for c in prange(bad.shape[0]):
        lo = c * chunk
        hi = min(lo + chunk, n)
        for j in range(N_CHECKS):
            bad[c, j] = -1
        ok, max_bits[c] = _vgc_scan_chunk(g[lo:hi], s[lo:hi], r[lo:hi], v[lo:hi], alpha, tau)
        if not ok:
            _first_bad(g, s, r, v, lo, hi, bad[c])


@njit(**_JIT)
def _vgc_write_sub(g, s, r, v, alpha, zeta, threshold, feedback, E, first, flag, word):
    """Steps 1-5 on one sub-block (vectorized): update r, v; flag and word per element."""
    count = 0
    e_top = np.uint32(E)
    for i in range(g.shape[0]):
        ri = r[i] + g[i]  # 1. one rounded float32 add each
        vi = v[i] + s[i]
        b = _bits(ri)
        e_field = _exponent_field(b & U32_ABS)  # 3. e << 23
        q = _float((b & U32_SIGN) | e_field)  # sign(r) * 2^(e - 127)
        # 2. + 4.: candidate, normal, |r| >= tau and k <= 15, as one threshold on |r|.
        send = (ri * ri > alpha * vi) & (abs(ri) >= threshold)
        r_sent = ri - q if feedback else F32_ZERO  # 5. exact subtraction
        r[i] = r_sent if send else ri
        v[i] = F32_ZERO if send else zeta * vi
        flag[i] = send
        word[i] = (
            (np.uint32(first + i) << np.uint32(5))
            | ((b >> np.uint32(31)) << np.uint32(4))
            | ((e_top - (e_field >> np.uint32(23))) & np.uint32(0xF))
        )
        count += send
    return count


@njit(inline="always", **_JIT)
def _compact(flag, word, m, out, pos):
    """Append word[j] for each flagged j < m to out[pos:]; return the new pos."""
    for j in range(m):
        if flag[j]:
            out[pos] = word[j]
            pos += 1
    return pos


@njit(parallel=True, **_JIT)
def _vgc_write(g, s, r, v, alpha, zeta, threshold, feedback, E, chunk, counts, scratch):
    """Pass 2: update r and v in place; chunk c's words go to scratch[c*chunk:], counted."""
    n = g.shape[0]
    for c in prange(counts.shape[0]):
        lo = c * chunk
        hi = min(lo + chunk, n)
        flag = np.empty(SUB, np.bool_)
        word = np.empty(SUB, np.uint32)
        pos = lo
        for a in range(lo, hi, SUB):
            b = min(a + SUB, hi)
            m = b - a
            sent = _vgc_write_sub(
                g[a:b], s[a:b], r[a:b], v[a:b], alpha, zeta, threshold, feedback, E, a, flag, word
            )
            if sent > 0:
                pos = _compact(flag, word, m, scratch, pos)
        counts[c] = pos - lo


@njit(parallel=True, **_JIT)
def _gather_words(scratch, chunk, counts, offset, words):
    """words[offset[c] : offset[c] + counts[c]] = scratch[c*chunk : ...], in chunk order."""
    for c in prange(counts.shape[0]):
        src = c * chunk
        dst = offset[c]
        for j in range(counts[c]):
            words[dst + j] = scratch[src + j]


# --------------------------------------------------------------------------------------
# Strom step kernels
# --------------------------------------------------------------------------------------


@njit(**_JIT)
def _strom_scan_chunk(g, r, tau):
    """Pass 1 on one chunk: (all sums finite, number of |r + g| >= tau)."""
    ok = True
    count = 0
    for i in range(g.shape[0]):
        ar = abs(r[i] + g[i])
        ok = ok & (ar <= F32_MAX)  # a non-finite g makes r + g non-finite
        count += ar >= tau
    return ok, count


@njit(parallel=True, **_JIT)
def _strom_scan(g, r, tau, chunk, bad, counts):
    """Pass 1 (read-only); bad uses the columns G_NONFINITE and RG_OVERFLOW."""
    n = g.shape[0]
    for c in prange(bad.shape[0]):
        lo = c * chunk
        hi = min(lo + chunk, n)
        for j in range(N_CHECKS):
            bad[c, j] = -1
        ok, counts[c] = _strom_scan_chunk(g[lo:hi], r[lo:hi], tau)
        if not ok:
            # s := g: its checks repeat g's and land in columns that strom ignores.
            _first_bad(g, g, r, r, lo, hi, bad[c])


@njit(**_JIT)
def _strom_write_sub(g, r, tau, first, flag, word):
    """r <- r + g; |r| >= tau: send sign * tau, r <- r - q (vectorized)."""
    count = 0
    tau_bits = _bits(tau)
    for i in range(g.shape[0]):
        ri = r[i] + g[i]
        b = _bits(ri)
        q = _float((b & U32_SIGN) | tau_bits)  # sign(r) * tau
        send = abs(ri) >= tau
        r[i] = ri - q if send else ri
        flag[i] = send
        word[i] = (np.uint32(first + i) << np.uint32(1)) | (b >> np.uint32(31))
        count += send
    return count


@njit(parallel=True, **_JIT)
def _strom_write(g, r, tau, chunk, offset, words):
    """Pass 2: update r in place and write chunk c's words from offset[c] on."""
    n = g.shape[0]
    for c in prange(offset.shape[0]):
        lo = c * chunk
        hi = min(lo + chunk, n)
        flag = np.empty(SUB, np.bool_)
        word = np.empty(SUB, np.uint32)
        pos = offset[c]
        for a in range(lo, hi, SUB):
            b = min(a + SUB, hi)
            if _strom_write_sub(g[a:b], r[a:b], tau, a, flag, word) > 0:
                pos = _compact(flag, word, b - a, words, pos)


@njit(**_JIT)
def _exclusive_sum(counts):
    """Exclusive prefix sum of per-chunk counts: (offset, total)."""
    offset = np.empty(counts.shape[0], np.int64)
    total = 0
    for c in range(counts.shape[0]):
        offset[c] = total
        total += counts[c]
    return offset, total


# --------------------------------------------------------------------------------------
# Decode and accumulate
# --------------------------------------------------------------------------------------


@njit(inline="always", **_JIT)
def _lower_bound(words, lo, hi, key):
    """First position p in words[lo:hi] (sorted) with words[p] >= key."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if np.int64(words[mid]) < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(parallel=True, **_JIT)
def _accumulate(out, words, start, codec, param, n_ranks, chunk):
    """out[i] = (sum over ranks, in rank order, of q_{w,i}) / float32(P), from +0.0.

    words: uint32, every rank's words concatenated; rank w's are words[start[w]:start[w+1]]
    with codec[w] and param[w]. Chunks of out are independent: each one finds each rank's
    words for its index range by binary search (words are sorted by index) and adds them
    in rank order while the chunk is in cache.
    """
    n = out.shape[0]
    p32 = np.float32(n_ranks)
    n_chunks = (n + chunk - 1) // chunk
    for c in prange(n_chunks):
        lo = c * chunk
        hi = min(lo + chunk, n)
        for i in range(lo, hi):
            out[i] = np.float32(0)
        for w in range(codec.shape[0]):  # rank order
            a = start[w]
            b = start[w + 1]
            if codec[w] == 0:  # DENSE: word j is element j
                for i in range(lo, hi):
                    out[i] = out[i] + _float(np.int64(words[a + i]))
            elif codec[w] == 1:  # VGC_Q4: index << 5 | sign << 4 | k
                E = np.int64(param[w])
                p = _lower_bound(words, a, b, np.int64(lo) << 5)
                end = _lower_bound(words, p, b, np.int64(hi) << 5)
                for j in range(p, end):
                    word = np.int64(words[j])
                    q = _float(((word >> 4) & 1) << 31 | ((E - (word & 0xF)) << 23))
                    i = word >> 5
                    out[i] = out[i] + q
            else:  # STROM: index << 1 | sign; value sign * tau
                tau_bits = np.int64(param[w])
                p = _lower_bound(words, a, b, np.int64(lo) << 1)
                end = _lower_bound(words, p, b, np.int64(hi) << 1)
                for j in range(p, end):
                    word = np.int64(words[j])
                    i = word >> 1
                    out[i] = out[i] + _float(((word & 1) << 31) | tau_bits)
        for i in range(lo, hi):
            out[i] = out[i] / p32


# --------------------------------------------------------------------------------------
# Python wrappers: validation in the reference's order, then the kernels
# --------------------------------------------------------------------------------------


def _n_chunks(n: int) -> int:
    return (n + CHUNK - 1) // CHUNK


def _raise_first_bad(bad: np.ndarray, state: SegmentState, g: np.ndarray, s: np.ndarray | None) -> None:
    """Raise the reference's error for the first failing check (lowest index), if any."""
    if not (bad >= 0).any():
        return
    seg = state.segment_id
    for check in range(N_CHECKS):
        hits = bad[:, check]
        hits = hits[hits >= 0]
        if hits.size == 0:
            continue
        i = int(hits.min())
        if check == G_NONFINITE:
            raise NonFiniteError("g", seg, i, float(g[i]))
        if check == S_NONFINITE:
            raise NonFiniteError("s", seg, i, float(s[i]))
        if check == S_NEGATIVE:
            raise NegativeVarianceError(seg, i, float(s[i]))
        if check == RG_OVERFLOW:
            raise AccumulatorOverflowError("r + g", seg, i, float(state.r[i]))
        raise AccumulatorOverflowError("v + s", seg, i, float(state.v[i]))


def _check_vectors(state: SegmentState, g: np.ndarray, s: np.ndarray | None) -> None:
    """The reference's type, dtype and length checks, in its order.

    The reference checks g's values before s's dtype; so when s is malformed, a
    non-finite g must still win.
    """
    check_vector("g", g, state.n)
    if s is None:
        return
    try:
        check_vector("s", s, state.n)
    except InputError:
        check_finite("g", g, state.segment_id)
        raise


def _contiguous_state(state: SegmentState) -> tuple[np.ndarray, np.ndarray]:
    """r and v as C-contiguous arrays the kernels may write (copies only for strided views)."""
    return np.ascontiguousarray(state.r), np.ascontiguousarray(state.v)


def _write_back(state: SegmentState, r: np.ndarray, v: np.ndarray) -> None:
    if r is not state.r:
        state.r[...] = r
    if v is not state.v:
        state.v[...] = v


def _vgc_scan_checked(state: SegmentState, g: np.ndarray, s: np.ndarray, params: VGCParams):
    """Pass 1 and the error it finds, if any; returns (g, s, r, v, max_bits) for pass 2."""
    _check_vectors(state, g, s)
    g = np.ascontiguousarray(g)
    s = np.ascontiguousarray(s)
    r, v = _contiguous_state(state)
    n_chunks = _n_chunks(state.n)
    bad = np.empty((n_chunks, N_CHECKS), np.int64)
    max_bits = np.empty(n_chunks, np.uint32)
    _vgc_scan(g, s, r, v, params.alpha32, params.tau32, CHUNK, bad, max_bits)
    _raise_first_bad(bad, state, g, s)
    return g, s, r, v, max_bits


def check_step(state: SegmentState, g: np.ndarray, s: np.ndarray | None = None) -> None:
    """Validate one step's inputs without changing anything (twin of criterion.accumulate).

    Raises exactly what :func:`vgc_ref.criterion.accumulate` raises, for the same index.
    """
    if s is None:
        _strom_scan_checked(state, g, StromParams(1.0))
    else:
        _vgc_scan_checked(state, g, s, VGCParams())


def vgc_step(state: SegmentState, g: np.ndarray, s: np.ndarray, params: VGCParams) -> Packet:
    """One VGC step on one segment; twin of :func:`vgc_ref.criterion.vgc_step`.

    Same arguments, same packet, same r and v, same errors (state unchanged on error).
    """
    if not isinstance(params, VGCParams):
        raise TypeError(f"params must be VGCParams, not {type(params).__name__}")
    g, s, r, v, max_bits = _vgc_scan_checked(state, g, s, params)
    E = _largest_exponent(int(max_bits.max(initial=0)))
    threshold = _send_threshold(E, params.tau32)
    feedback = params.residual == "feedback"
    counts = np.empty(_n_chunks(state.n), np.int64)
    scratch = np.empty(state.n, np.uint32)  # chunk c's words start at c * CHUNK
    _vgc_write(g, s, r, v, params.alpha32, params.zeta32, threshold, feedback, E, CHUNK, counts, scratch)
    offset, total = _exclusive_sum(counts)
    words = np.empty(total, np.uint32)
    _gather_words(scratch, CHUNK, counts, offset, words)
    _write_back(state, r, v)
    return Packet(state.segment_id, state.n, Codec.VGC_Q4, E, words)


def _strom_scan_checked(state: SegmentState, g: np.ndarray, params: StromParams):
    _check_vectors(state, g, None)
    g = np.ascontiguousarray(g)
    r = np.ascontiguousarray(state.r)
    n_chunks = _n_chunks(state.n)
    bad = np.empty((n_chunks, N_CHECKS), np.int64)
    counts = np.empty(n_chunks, np.int64)
    _strom_scan(g, r, params.tau32, CHUNK, bad, counts)
    bad[:, [S_NONFINITE, S_NEGATIVE, VS_OVERFLOW]] = -1  # there is no s
    _raise_first_bad(bad, state, g, None)
    return g, r, counts


def strom_step(state: SegmentState, g: np.ndarray, params: StromParams) -> Packet:
    """One step of Strom's baseline; twin of :func:`vgc_ref.criterion.strom_step`."""
    if not isinstance(params, StromParams):
        raise TypeError(f"params must be StromParams, not {type(params).__name__}")
    g, r, counts = _strom_scan_checked(state, g, params)
    offset, total = _exclusive_sum(counts)
    words = np.empty(total, np.uint32)
    _strom_write(g, r, params.tau32, CHUNK, offset, words)
    if r is not state.r:
        state.r[...] = r
    tau_bits = int(params.tau32.view(np.uint32))
    return Packet(state.segment_id, state.n, Codec.STROM, tau_bits, words)


def decode_messages(messages: Sequence[bytes]) -> list[list[Packet]]:
    """Decode P messages with the reference decoder; a FormatError gets ``rank``."""
    packet_lists = []
    for rank, message in enumerate(messages):
        try:
            packet_lists.append(decode_message(message))
        except FormatError as err:
            wrapped = FormatError(err.field, err.offset, f"{err.reason} (message of rank {rank})")
            wrapped.rank = rank
            raise wrapped from err
    return packet_lists


def accumulate_packets(
    packet_lists: Sequence[Sequence[Packet]],
    sizes: Sequence[int],
    out: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Rank-ordered mean of P workers' packets; twin of :func:`vgc_ref.aggregate.aggregate_packets`."""
    n_ranks = len(packet_lists)
    if n_ranks == 0:
        raise InputError("packet_lists", "0 ranks", "needs at least one worker's packets")
    sizes = [int(n) for n in sizes]
    _check_layout(packet_lists, sizes)
    _check_out(out, sizes)

    by_segment = [{p.segment_id: p for p in packets} for packets in packet_lists]
    result = []
    for j, n in enumerate(sizes):
        packets = [ranks[j] for ranks in by_segment]  # rank order
        lengths = np.array([p.count for p in packets], np.int64)
        start = np.zeros(n_ranks + 1, np.int64)
        np.cumsum(lengths, out=start[1:])
        words = np.concatenate([p.words for p in packets])  # uint32, writeable (one kernel type)
        codec = np.array([int(p.codec) for p in packets], np.int64)
        param = np.array([p.param for p in packets], np.int64)
        if out is None:
            buf = np.empty(n, np.float32)
        else:
            buf = out[j]
        target = buf if buf.flags.c_contiguous else np.empty(n, np.float32)
        _accumulate(target, words, start, codec, param, n_ranks, CHUNK)
        if target is not buf:
            buf[...] = target
        result.append(buf)
    return result


def decode_accumulate(
    messages: Sequence[bytes],
    sizes: Sequence[int],
    out: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Decode P messages and return g_hat; twin of :func:`vgc_ref.aggregate.decode_accumulate`.

    Decoding and every check are the reference decoder's (vectorized NumPy; it validates
    a whole message before returning), so exactly the same messages are rejected with the
    same errors; the accumulation is one parallel kernel pass over each segment.
    """
    return accumulate_packets(decode_messages(messages), sizes, out)


BACKEND = Backend(
    name="numba-cpu",
    vgc_step=vgc_step,
    strom_step=strom_step,
    check_step=check_step,
    decode_accumulate=decode_accumulate,
    dense_grad_var=dense_grad_var,
)
