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
             words to its own stretch of a scratch buffer (a float32-only vectorized
             loop over a sub-block that flags the sent elements, then the integer work
             and the word for the flagged ones only); count per chunk.
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

Small segments and threads: a segment of at most :data:`SERIAL_MAX` elements runs the
same kernels compiled without ``parallel=True``, on the calling thread. Waking Numba's
thread pool costs tens of microseconds on an idle machine and, on a busy one, up to tens
of milliseconds (a 1000-element step took 64-76 ms with 2 threads against 0.1 ms with
one); a segment this small gains nothing from it (docs/performance.md has the
measurement). The parallel kernels are launched under one lock: Numba's workqueue
threading layer aborts the process when two Python threads enter a parallel region at
once, and each region already uses every Numba thread. Small segments take no lock, so
threads that step small segments run side by side.

The dense-layer gradient and variance term are a register-tiled kernel (section "Dense
layer" below; docs/algorithm.md section 2: the reference's order of additions, bit for
bit), compiled with LLVM's SLP vectorizer; the column sums are those of
:mod:`vgc_ref.backends.numba_portable`. The faster BLAS form,
:func:`vgc_ref.variance.dense_grad_var_blas`, is outside the contract.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence
from types import FunctionType

import numpy as np
from numba import config as numba_config
from numba import njit, prange, types
from numba.core.compiler_lock import global_compiler_lock
from numba.core.extending import intrinsic
from numba.cpython.unsafe.numbers import trailing_zeros

from vgc_ref import encoding, quantize
from vgc_ref.aggregate import check_messages, rank_ordered_segments
from vgc_ref.backends import Backend, numba_conv, numba_portable
from vgc_ref.backends.numba_portable import column_sums
from vgc_ref.criterion import check_finite, check_out, missing_variance
from vgc_ref.encoding import decode_message
from vgc_ref.errors import (
    AccumulatorOverflowError,
    FormatError,
    InputError,
    NegativeVarianceError,
    NonFiniteError,
)
from vgc_ref.packet import MAX_SEGMENT_LEN, Codec, Packet
from vgc_ref.params import StromParams, VGCParams
from vgc_ref.portable import check_product
from vgc_ref.state import SegmentState, check_vector
from vgc_ref.variance import _check_pair

#: Elements per chunk of a parallel pass (256 KiB of float32 per array).
CHUNK = 1 << 16
#: Segments of at most this many elements run on the calling thread, without a parallel
#: region (module docstring). Measured: docs/performance.md, "Small segments".
SERIAL_MAX = CHUNK
#: The gather of a VGC step's words runs on the calling thread up to this many words
#: (16 MiB): with 2 threads under load, waking the pool for the ~1 % of words took
#: 15-26 ms against 0.2 ms of copying (docs/performance.md, "The VGC step").
GATHER_SERIAL_MAX = 1 << 22
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
U32_ZERO = np.uint32(0)
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


@intrinsic
def _umax32(typingctx, a, b):
    """max of two uint32 as a 32-bit operation (Numba's max() widens to 64 bits)."""
    if a != types.uint32 or b != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        x, y = args
        return builder.select(builder.icmp_unsigned(">", x, y), x, y)

    return types.uint32(types.uint32, types.uint32), codegen


@njit(inline="always", **_JIT)
def _exponent_field(abs_bits):
    """quantize.rounded_exponent of |r| (from its bits), in place in bits 30..23."""
    return min(abs_bits + ROUND_UP, E_CLAMP) & U32_EXPONENT


@njit(inline="always", **_JIT)
def _chunk_threshold(max_bits, tau):
    """_send_threshold(_largest_exponent(max_bits), tau) inside a kernel (float32)."""
    if max_bits < SMALLEST_NORMAL_BITS:
        return np.float32(np.inf)
    e_min = np.int64(min((np.int64(max_bits) + np.int64(ROUND_UP)) >> 23, MAX_EXPONENT)) - MAX_K
    low = max((e_min << 23) - np.int64(ROUND_UP), np.int64(SMALLEST_NORMAL_BITS))
    t = _float(np.uint32(low))
    return t if t >= tau else tau


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
    """Pass 1 on one chunk: (all inputs good, largest bits of |r| over sendable candidates).

    Only float32 and uint32 operations (the maxima go through _umax32), so the loop
    vectorizes 8 lanes wide.
    """
    max_abs = U32_ZERO  # largest bits of |r + g| and |v + s|
    max_s = U32_ZERO  # largest bits of s: above U32_SIGN means s < 0 (-0.0 is fine)
    max_bits = U32_ZERO
    for i in range(g.shape[0]):
        si = s[i]
        ri = r[i] + g[i]  # float32
        vi = v[i] + si  # float32
        ar = abs(ri)
        ab = _bits(ar)
        # Non-finite g or s, negative s, or an overflowing sum all show up here (a
        # non-finite g or s makes a sum non-finite); which one, and where, is found by
        # _first_bad.
        max_abs = _umax32(max_abs, _umax32(ab, _bits(abs(vi))))
        max_s = _umax32(max_s, _bits(si))
        candidate = (ri * ri > alpha * vi) & (ar >= tau)
        max_bits = _umax32(max_bits, ab if candidate else U32_ZERO)
    return (max_abs < U32_EXPONENT) & (max_s <= U32_SIGN), max_bits


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
def _vgc_write_sub(g, s, r, v, alpha, zeta, threshold, flag):
    """Steps 1, 2, 4 and v's update on one sub-block: float32 only, vectorized.

    r <- r + g (the sent elements are finished by _vgc_finish_sent), v <- 0 where sent
    and zeta (v + s) elsewhere, flag[i] = sent.
    """
    for i in range(g.shape[0]):
        ri = r[i] + g[i]  # 1. one rounded float32 add each
        vi = v[i] + s[i]
        # 2. + 4.: candidate, normal, |r| >= tau and k <= 15, as one threshold on |r|.
        send = (ri * ri > alpha * vi) & (abs(ri) >= threshold)
        r[i] = ri
        v[i] = F32_ZERO if send else zeta * vi
        flag[i] = send


@njit(inline="always", **_JIT)
def _sent_value(ri, feedback):
    """Steps 3 and 5 for one sent r: (the new r, its bits, the exponent field e << 23)."""
    b = _bits(ri)
    e_field = _exponent_field(b & U32_ABS)  # 3. e << 23
    q = _float((b & U32_SIGN) | e_field)  # sign(r) * 2^(e - 127)
    return (ri - q if feedback else F32_ZERO), b, e_field  # 5. exact subtraction


@njit(inline="always", **_JIT)
def _vgc_word(index, b, e_field, e_top):
    """The VGC_Q4 word of a sent element: index, sign bit of r, k = E - e (docs/format.md)."""
    return (
        (np.uint32(index) << np.uint32(5))
        | ((b >> np.uint32(31)) << np.uint32(4))
        | ((e_top - (e_field >> np.uint32(23))) & np.uint32(0xF))
    )


@njit(inline="always", **_JIT)
def _vgc_finish_sent(flag64, first, r, feedback, e_top, out, pos):
    """Steps 3 and 5 for the flagged elements only; append their words to out[pos:].

    flag64 is the sub-block's flags as uint64 (8 per word, a byte each); each set byte is
    found with a trailing-zero count, so a word of 8 unsent elements costs one test.
    """
    for t in range(flag64.shape[0]):
        x = flag64[t]
        while x != 0:
            j = 8 * t + (trailing_zeros(x) >> 3)
            x &= x - np.uint64(1)
            r[j], b, e_field = _sent_value(r[j], feedback)
            out[pos] = _vgc_word(first + j, b, e_field, e_top)
            pos += 1
    return pos


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
    e_top = np.uint32(E)
    for c in prange(counts.shape[0]):
        lo = c * chunk
        hi = min(lo + chunk, n)
        flag = np.zeros(SUB, np.bool_)
        flag64 = flag.view(np.uint64)
        pos = lo
        for a in range(lo, hi, SUB):
            b = min(a + SUB, hi)
            m = b - a
            _vgc_write_sub(g[a:b], s[a:b], r[a:b], v[a:b], alpha, zeta, threshold, flag)
            m8 = (m + 7) >> 3
            for j in range(m, 8 * m8):  # a short last sub-block: clear stale flags
                flag[j] = False
            pos = _vgc_finish_sent(flag64[:m8], a, r[a:b], feedback, e_top, scratch, pos)
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
# VGC step on a scratch state: one pass (vgc_step_scratch)
# --------------------------------------------------------------------------------------
#
# A caller that throws the state away on error (the DDP hook steps a spare copy) does not
# need the first pass: validation, the sums and the writes share one pass. Each sub-block
# of 2048 elements is checked first (its g, s, r and v then sit in L1) and written only
# if good: r <- r + g and v <- zeta (v + s) everywhere, and its candidates flagged. A
# chunk that meets a bad sub-block stops writing and finds the first bad index of each
# check from there on, over values still unwritten, so the error is the reference's.
#
# Sending needs the segment's E, known only after the pass. Each sub-block sends at once,
# while it is in L1, every candidate at or above the chunk's running threshold: the
# threshold of the largest |r| among the chunk's candidates so far, this sub-block's
# included. That largest |r| only grows and is at most the segment's, so the running
# threshold is at most the segment's: every candidate the segment sends is sent here, and
# a candidate left unsent here is unsent in the segment too. The sent ones are listed with
# their r and v from before the send. Once E is known, one sequential pass over the lists
# writes the words of those at or above the segment's threshold and puts back r and v of
# the others (from the list). Where the scale of |r| does not grow along the segment,
# those are few: the running threshold soon reaches the segment's.
#
# With ``out``, the pass reads r and v and writes out's (the DDP hook steps its committed
# state into a spare): everything above holds with r and v read from the state and
# written, listed and put back in out, so the state is never written.


@njit(**_JIT)
def _sub_ok(g, s, r, v):
    """All of a sub-block's inputs good (the maxima of _vgc_scan_chunk); nothing written."""
    max_abs = U32_ZERO
    max_s = U32_ZERO
    for i in range(g.shape[0]):
        si = s[i]
        max_abs = _umax32(max_abs, _umax32(_bits(abs(r[i] + g[i])), _bits(abs(v[i] + si))))
        max_s = _umax32(max_s, _bits(si))
    return (max_abs < U32_EXPONENT) & (max_s <= U32_SIGN)


@njit(**_JIT)
def _vgc_one_sub(g, s, r, v, alpha, zeta, tau, flag):
    """Steps 1, 2 and v's update for a good sub-block, in place; flag = candidate."""
    for i in range(g.shape[0]):
        ri = r[i] + g[i]  # 1. one rounded float32 add each
        vi = v[i] + s[i]
        r[i] = ri
        v[i] = zeta * vi  # 4. for the elements not sent; the sent ones get 0 below
        flag[i] = (ri * ri > alpha * vi) & (abs(ri) >= tau)  # 2.


@njit(**_JIT)
def _vgc_one_sub_into(g, s, r, v, r_out, v_out, alpha, zeta, tau, flag):
    """_vgc_one_sub from r and v into r_out and v_out, arrays they do not overlap. (One
    kernel for both would take r_out = r at run time, where LLVM's overlap check sends
    the loop to its scalar version: the in-place step would run 1.6x slower.)"""
    for i in range(g.shape[0]):
        ri = r[i] + g[i]
        vi = v[i] + s[i]
        r_out[i] = ri
        v_out[i] = zeta * vi
        flag[i] = (ri * ri > alpha * vi) & (abs(ri) >= tau)


@njit(**_JIT)
def _candidates_max(flag, r):
    """The largest bits of |r[i]| over the flagged i (0 for none; vectorized). The flag
    masks the bits (and with 0 or ~0) where _vgc_scan_chunk selects: the select made the
    whole scratch step about 3 % slower here."""
    m = U32_ZERO
    for i in range(r.shape[0]):
        m = _umax32(m, np.uint32(_bits(abs(r[i])) & (U32_ZERO - np.uint32(flag[i]))))
    return m


@njit(inline="always", **_JIT)
def _send_listed(flag64, first, r, v, threshold, feedback, cand, cand_r, cand_v, pos):
    """For each set flag byte j (8 flags per test; r and v are the sub-block, in L1) with
    |r[j]| >= threshold: append first + j, r[j] and v[j], then send it (steps 3 and 5;
    v[j] = 0). Returns the new pos."""
    for t in range(flag64.shape[0]):
        x = flag64[t]
        while x != 0:
            j = 8 * t + (trailing_zeros(x) >> 3)
            x &= x - np.uint64(1)
            rj = r[j]
            if abs(rj) >= threshold:
                cand[pos] = np.uint32(first + j)
                cand_r[pos] = rj
                cand_v[pos] = v[j]
                r[j] = _sent_value(rj, feedback)[0]
                v[j] = F32_ZERO
                pos += 1
    return pos


@njit(parallel=True, **_JIT)
def _vgc_one_pass(g, s, r, v, r_out, v_out, alpha, zeta, tau, feedback, chunk, bad, max_bits, counts, lists):
    """The one pass, from r and v into r_out and v_out (the same arrays for a step in
    place). Chunk c sends its candidates at or above its running threshold and lists them
    at lists[:, c*chunk:] (index, r, v before the send, as uint32 bits), counts[c] of
    them; max_bits[c] is the largest bits of |r| among all its candidates; bad[c] is left
    as _vgc_scan leaves it (-1 everywhere with no bad input)."""
    n = g.shape[0]
    in_place = r_out.ctypes.data == r.ctypes.data
    cand = lists[0]
    cand_r = lists[1].view(np.float32)
    cand_v = lists[2].view(np.float32)
    for c in prange(counts.shape[0]):
        lo = c * chunk
        hi = min(lo + chunk, n)
        for j in range(N_CHECKS):
            bad[c, j] = -1
        flag = np.zeros(SUB, np.bool_)
        flag64 = flag.view(np.uint64)
        m_bits = U32_ZERO
        pos = lo
        for a in range(lo, hi, SUB):
            b = min(a + SUB, hi)
            m = b - a
            if not _sub_ok(g[a:b], s[a:b], r[a:b], v[a:b]):
                _first_bad(g, s, r, v, a, hi, bad[c])  # [lo, a) is good and written
                break
            if in_place:
                r_new, v_new = r[a:b], v[a:b]
                _vgc_one_sub(g[a:b], s[a:b], r_new, v_new, alpha, zeta, tau, flag)
            else:
                r_new, v_new = r_out[a:b], v_out[a:b]
                _vgc_one_sub_into(g[a:b], s[a:b], r[a:b], v[a:b], r_new, v_new, alpha, zeta, tau, flag)
            m_bits = _umax32(m_bits, _candidates_max(flag[:m], r_new))
            threshold = _chunk_threshold(m_bits, tau)  # the chunk's running threshold
            m8 = (m + 7) >> 3
            for j in range(m, 8 * m8):  # a short last sub-block: clear stale flags
                flag[j] = False
            pos = _send_listed(flag64[:m8], a, r_new, v_new, threshold, feedback, cand, cand_r, cand_v, pos)
        counts[c] = pos - lo
        max_bits[c] = m_bits


@njit(parallel=True, **_JIT)
def _vgc_words_listed(r, v, threshold, feedback, E, chunk, counts, lists):
    """With the segment's threshold: the words of the listed (sent) elements at or above
    it (they replace the chunk's list in lists[0], never ahead of it; counts[c] becomes
    their number), and r and v put back for those below it."""
    e_top = np.uint32(E)
    cand = lists[0]
    cand_r = lists[1].view(np.float32)
    cand_v = lists[2].view(np.float32)
    for c in prange(counts.shape[0]):
        lo = c * chunk
        pos = lo
        for t in range(lo, lo + counts[c]):
            ri = cand_r[t]
            j = cand[t]
            a = abs(ri)
            if a >= threshold:  # a candidate: "sendable, k <= 15 and |r| >= tau"
                _, b, e_field = _sent_value(ri, feedback)
                cand[pos] = _vgc_word(j, b, e_field, e_top)
                pos += 1
            else:  # sent by the chunk's running threshold, not by the segment's: undo
                r[j] = ri
                v[j] = cand_v[t]
        counts[c] = pos - lo


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


@njit(**_JIT)
def _u32_at(b, o):
    """The little-endian u32 at byte o of the uint8 array b, as int64."""
    return (
        np.int64(b[o]) | (np.int64(b[o + 1]) << 8) | (np.int64(b[o + 2]) << 16) | (np.int64(b[o + 3]) << 24)
    )


@njit(**_JIT)
def _parse_frame(b):
    """Framing rules (docs/format.md, step 1) of a message as uint8[L]: (ok, table).

    table: int64[S, 7] of (segment_id, n, codec, param, count, words_offset, reserved
    bytes OR-ed). Only says whether the message is well framed, not what is wrong.
    """
    limit = b.shape[0] - 4  # the last 4 bytes are the CRC
    empty = np.zeros((0, 7), np.int64)
    if limit < 12:
        return False, empty
    if b[0] != 0x56 or b[1] != 0x47 or b[2] != 0x43 or b[3] != 0x4D:  # "VGCM"
        return False, empty
    if b[4] != 1 or b[5] != 0 or b[6] != 0 or b[7] != 0:  # version 1, reserved 0
        return False, empty
    n_segments = _u32_at(b, 8)
    if n_segments > (limit - 12) // 20:  # each segment needs >= 20 bytes
        return False, empty
    table = np.zeros((n_segments, 7), np.int64)
    offset = 12
    for j in range(n_segments):
        if offset + 20 > limit:
            return False, table
        count = _u32_at(b, offset + 16)
        words_offset = offset + 20
        if words_offset + 4 * count > limit:
            return False, table
        table[j, 0] = _u32_at(b, offset)
        table[j, 1] = _u32_at(b, offset + 4)
        table[j, 2] = b[offset + 8]
        table[j, 3] = _u32_at(b, offset + 12)
        table[j, 4] = count
        table[j, 5] = words_offset
        table[j, 6] = b[offset + 9] | b[offset + 10] | b[offset + 11]
        offset = words_offset + 4 * count
    return offset == limit, table


@njit(**_JIT)
def _indices_ok(words, shift, n):
    """Indices (word >> shift) below n and strictly increasing."""
    bad = False
    previous = np.int64(-1)
    for j in range(words.shape[0]):
        index = np.int64(words[j] >> shift)
        bad |= (index >= n) | (index <= previous)
        previous = index
    return not bad


@njit(**_JIT)
def _payload_ok(words, codec, n, param):
    """encoding._payload_problem(...) is None, for a known codec (words: uint32[count])."""
    count = words.shape[0]
    if codec == 1:  # VGC_Q4
        E = param
        if param > 0xFF or E > MAX_EXPONENT or (E == 0) != (count == 0) or count > n:
            return False
        if not _indices_ok(words, 5, n):
            return False
        bad = False
        has_k0 = False
        for j in range(count):
            k = np.int64(words[j] & 0xF)
            bad |= k >= E
            has_k0 |= k == 0
        return (not bad) and (count == 0 or has_k0)
    if codec == 2:  # STROM: tau finite and > 0
        if param < 1 or param > 0x7F7FFFFF or count > n:
            return False
        return _indices_ok(words, 1, n)
    # DENSE
    if param != 0 or count != n:
        return False
    bad = False
    for j in range(count):
        bad |= (words[j] & U32_EXPONENT) == U32_EXPONENT
    return not bad


@njit(**_JIT)
def _content_ok(words, table):
    """Content rules (docs/format.md, step 3) of every segment; words: the message as u32."""
    n_segments = table.shape[0]
    for j in range(n_segments):
        n = table[j, 1]
        codec = table[j, 2]
        if n > MAX_SEGMENT_LEN or codec > 2 or table[j, 6] != 0:
            return False
        first = table[j, 5] >> 2  # word offsets are multiples of 4
        if not _payload_ok(words[first : first + table[j, 4]], codec, n, table[j, 3]):
            return False
    ids = np.sort(table[:, 0])
    for j in range(1, n_segments):
        if ids[j] == ids[j - 1]:
            return False
    return True


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


@njit(**_JIT)
def _fill_zero(out):
    for i in range(out.shape[0]):
        out[i] = F32_ZERO


@njit(**_JIT)
def _divide(out, p32):
    for i in range(out.shape[0]):
        out[i] = out[i] / p32


@njit(**_JIT)
def _add_dense(out, words):
    for i in range(out.shape[0]):
        out[i] = out[i] + _float(words[i])


@njit(**_JIT)
def _add_vgc(out, words, lo, E):
    """out[index - lo] += sign * 2^(E - k - 127) for each VGC_Q4 word."""
    e_top = np.uint32(E)
    for j in range(words.shape[0]):
        word = words[j]
        q = _float(
            ((word >> np.uint32(4)) & np.uint32(1)) << np.uint32(31)
            | ((e_top - (word & np.uint32(0xF))) << np.uint32(23))
        )
        i = np.int64(word >> np.uint32(5)) - lo
        out[i] = out[i] + q


@njit(**_JIT)
def _add_strom(out, words, lo, tau_bits):
    """out[index - lo] += sign * tau for each STROM word."""
    for j in range(words.shape[0]):
        word = words[j]
        i = np.int64(word >> np.uint32(1)) - lo
        out[i] = out[i] + _float(((word & np.uint32(1)) << np.uint32(31)) | tau_bits)


@njit(**_JIT)
def _divide_touched(out, words, shift, lo, p32, done):
    """out[i] = out[i] / p32 for each index i = word >> shift not yet in the bit set done."""
    for j in range(words.shape[0]):
        i = np.int64(words[j] >> shift) - lo
        bit = np.uint64(1) << np.uint64(i & 63)
        if (done[i >> 6] & bit) == 0:
            done[i >> 6] |= bit
            out[i] = out[i] / p32


#: _accumulate divides a whole chunk (vectorized) from one word per 2^DIVIDE_ALL_SHIFT
#: of its elements on, only the touched elements below that (docs/performance.md).
DIVIDE_ALL_SHIFT = 4


@njit(parallel=True, **_JIT)
def _accumulate(out, words, start, codec, param, n_ranks, chunk):
    """out[i] = (sum over ranks, in rank order, of q_{w,i}) / float32(P), from +0.0.

    words: uint32, every rank's words concatenated; rank w's are words[start[w]:start[w+1]]
    with codec[w] and param[w]. Chunks of out are independent: each one finds each rank's
    words for its index range by binary search (words are sorted by index) and adds them
    in rank order while the chunk is in cache. Then each element is divided by
    float32(P) exactly once: the whole chunk when a rank is DENSE or the chunk has at
    least one word per 2^DIVIDE_ALL_SHIFT elements (one vectorized pass), else only the
    touched elements (a bit set per chunk marks those done). The bits are the same either
    way: untouched elements hold +0.0, and +0.0 / P = +0.0.
    """
    n = out.shape[0]
    p32 = np.float32(n_ranks)
    n_chunks = (n + chunk - 1) // chunk
    any_dense = False
    for w in range(codec.shape[0]):
        any_dense |= codec[w] == 0
    for c in prange(n_chunks):
        lo = c * chunk
        hi = min(lo + chunk, n)
        o = out[lo:hi]
        # Zeroed chunk by chunk, so the adds find it in cache. (One memset of the whole
        # output streams past the cache and is faster alone, but then every add misses.)
        _fill_zero(o)
        first = np.empty(codec.shape[0], np.int64)  # rank w's words for this chunk:
        last = np.empty(codec.shape[0], np.int64)  # words[first[w]:last[w]]
        for w in range(codec.shape[0]):  # rank order
            a = start[w]
            b = start[w + 1]
            if codec[w] == 0:  # DENSE: word j is element j
                _add_dense(o, words[a + lo : a + hi])
                first[w] = a + lo
                last[w] = a + hi
            elif codec[w] == 1:  # VGC_Q4: index << 5 | sign << 4 | k
                first[w] = _lower_bound(words, a, b, np.int64(lo) << 5)
                last[w] = _lower_bound(words, first[w], b, np.int64(hi) << 5)
                _add_vgc(o, words[first[w] : last[w]], lo, param[w])
            else:  # STROM: index << 1 | sign; value sign * tau
                first[w] = _lower_bound(words, a, b, np.int64(lo) << 1)
                last[w] = _lower_bound(words, first[w], b, np.int64(hi) << 1)
                _add_strom(o, words[first[w] : last[w]], lo, np.uint32(param[w]))
        touched = 0
        for w in range(codec.shape[0]):
            touched += last[w] - first[w]
        if any_dense or touched >= (hi - lo) >> DIVIDE_ALL_SHIFT:
            _divide(o, p32)  # every element; an untouched +0.0 stays +0.0
        else:
            done = np.zeros((hi - lo + 63) >> 6, np.uint64)
            for w in range(codec.shape[0]):
                shift = np.uint32(5) if codec[w] == 1 else np.uint32(1)
                _divide_touched(o, words[first[w] : last[w]], shift, lo, p32, done)


# --------------------------------------------------------------------------------------
# Python wrappers: validation in the reference's order, then the kernels
# --------------------------------------------------------------------------------------


def _n_chunks(n: int) -> int:
    return (n + CHUNK - 1) // CHUNK


def _serial_twin(kernel):
    """``kernel`` compiled without ``parallel=True``: its prange loops run as range, here.

    A copy of the Python function under its own name, so that Numba's on-disk cache
    (keyed by the function's qualified name) keeps the two compilations apart.
    """
    py = kernel.py_func
    twin = FunctionType(py.__code__, py.__globals__, f"{py.__name__}_serial", py.__defaults__, py.__closure__)
    twin.__qualname__ = f"{py.__qualname__}_serial"
    twin.__doc__ = py.__doc__
    return njit(**_JIT)(twin)


#: Serializes the parallel kernels across Python threads (module docstring).
_PARALLEL_LOCK = threading.Lock()
_SERIAL = {}


def _launch(kernel, n: int, *args):
    """Run ``kernel`` on a segment of n elements: serial up to SERIAL_MAX, else parallel, locked."""
    if n <= SERIAL_MAX:
        twin = _SERIAL.get(kernel)
        if twin is None:
            twin = _SERIAL.setdefault(kernel, _serial_twin(kernel))
        return twin(*args)
    with _PARALLEL_LOCK:
        return kernel(*args)


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


_LOCAL = threading.local()


def _scratch(n: int, name: str = "scratch") -> np.ndarray:
    """A uint32 buffer of at least n words, kept per thread and reused from step to step.

    Pass 2 writes each chunk's words to its own stretch of it, touching only a few pages;
    a fresh 4n-byte array each step would cost a page fault per touched page (a whole
    2 MiB huge page where NumPy asks for those), which for 2^24 elements cost more than
    pass 2 itself. The buffer never leaves this module: the words are copied out.
    ``name`` keeps another buffer ("lists": the scratch step's candidate lists).
    """
    buf = getattr(_LOCAL, name, None)
    if buf is None or buf.shape[0] < n:
        buf = np.empty(n, np.uint32)
        setattr(_LOCAL, name, buf)
    return buf[:n]


def _vgc_arrays(state: SegmentState, g: np.ndarray, s: np.ndarray):
    """The checked, contiguous g, s, r and v of a VGC step, and its per-chunk outputs
    ``bad`` (first bad index per check) and ``max_bits``, not yet filled."""
    _check_vectors(state, g, s)
    r, v = _contiguous_state(state)
    n_chunks = _n_chunks(state.n)
    bad = np.empty((n_chunks, N_CHECKS), np.int64)
    max_bits = np.empty(n_chunks, np.uint32)
    return np.ascontiguousarray(g), np.ascontiguousarray(s), r, v, bad, max_bits


def _vgc_scan_checked(state: SegmentState, g: np.ndarray, s: np.ndarray, params: VGCParams):
    """Pass 1 and the error it finds, if any; returns (g, s, r, v, max_bits) for pass 2."""
    g, s, r, v, bad, max_bits = _vgc_arrays(state, g, s)
    _launch(_vgc_scan, state.n, g, s, r, v, params.alpha32, params.tau32, CHUNK, bad, max_bits)
    _raise_first_bad(bad, state, g, s)
    return g, s, r, v, max_bits


def _vgc_packet(
    state: SegmentState, out: SegmentState, r: np.ndarray, v: np.ndarray, E: int, counts, scratch
) -> Packet:
    """The words of chunk c (counts[c] of them at scratch[c * CHUNK:]) gathered in chunk
    order into ``state``'s packet; r and v written back to ``out`` where they are copies."""
    offset, total = _exclusive_sum(counts)
    words = np.empty(total, np.uint32)
    # The gather moves the words only (about 1 % of n): on the calling thread below
    # GATHER_SERIAL_MAX, where waking the pool under load cost more than the pass.
    size = 0 if total <= GATHER_SERIAL_MAX else state.n  # 0: the serial twin
    _launch(_gather_words, size, scratch, CHUNK, counts, offset, words)
    _write_back(out, r, v)
    return Packet(state.segment_id, state.n, Codec.VGC_Q4, E, words)


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
    if s is None:
        check_step(state, g, None)  # g's errors first
        raise missing_variance()
    g, s, r, v, max_bits = _vgc_scan_checked(state, g, s, params)
    E = _largest_exponent(int(max_bits.max(initial=0)))
    threshold = _send_threshold(E, params.tau32)
    feedback = params.residual == "feedback"
    counts = np.empty(_n_chunks(state.n), np.int64)
    scratch = _scratch(state.n)  # chunk c's words start at c * CHUNK
    alpha, zeta = params.alpha32, params.zeta32
    _launch(_vgc_write, state.n, g, s, r, v, alpha, zeta, threshold, feedback, E, CHUNK, counts, scratch)
    return _vgc_packet(state, state, r, v, E, counts, scratch)


def vgc_step_scratch(
    state: SegmentState, g: np.ndarray, s: np.ndarray, params: VGCParams, out: SegmentState | None = None
) -> Packet:
    """One VGC step on a scratch state; twin of :func:`vgc_ref.criterion.vgc_step_scratch`.

    On success the packet, r and v of :func:`vgc_step` (in ``out`` when given); on error
    its error, with r and v partly stepped (``out``'s; ``state`` is then unchanged). One
    pass over g, s, r and v, then one over the candidates only (section "VGC step on a
    scratch state").
    """
    if not isinstance(params, VGCParams):
        raise TypeError(f"params must be VGCParams, not {type(params).__name__}")
    if out is None:
        out = state
    elif out is not state:
        check_out(state, out, g, s)
    if s is None:
        check_step(state, g, None)  # g's errors first
        raise missing_variance()
    g, s, r, v, bad, max_bits = _vgc_arrays(state, g, s)
    r_out, v_out = (r, v) if out is state else _contiguous_state(out)
    counts = np.empty(bad.shape[0], np.int64)
    lists = _scratch(3 * state.n, "lists").reshape(3, state.n)  # chunk c's list at c * CHUNK
    alpha, zeta, tau = params.alpha32, params.zeta32, params.tau32
    feedback = params.residual == "feedback"
    args = (
        g,
        s,
        r,
        v,
        r_out,
        v_out,
        alpha,
        zeta,
        tau,
        feedback,
        CHUNK,
        bad,
        max_bits,
        counts,
        lists,
    )
    _launch(_vgc_one_pass, state.n, *args)
    _raise_first_bad(bad, state, g, s)  # the values it names are still unwritten
    E = _largest_exponent(int(max_bits.max(initial=0)))
    threshold = _send_threshold(E, tau)
    _launch(_vgc_words_listed, state.n, r_out, v_out, threshold, feedback, E, CHUNK, counts, lists)
    return _vgc_packet(state, out, r_out, v_out, E, counts, lists[0])


def _strom_scan_checked(state: SegmentState, g: np.ndarray, params: StromParams):
    _check_vectors(state, g, None)
    g = np.ascontiguousarray(g)
    r = np.ascontiguousarray(state.r)
    n_chunks = _n_chunks(state.n)
    bad = np.empty((n_chunks, N_CHECKS), np.int64)
    counts = np.empty(n_chunks, np.int64)
    _launch(_strom_scan, state.n, g, r, params.tau32, CHUNK, bad, counts)
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
    _launch(_strom_write, state.n, g, r, params.tau32, CHUNK, offset, words)
    if r is not state.r:
        state.r[...] = r
    tau_bits = int(params.tau32.view(np.uint32))
    return Packet(state.segment_id, state.n, Codec.STROM, tau_bits, words)


U32_MAX = (1 << 32) - 1


def _fields_ok(packet: Packet) -> bool:
    """segment_id, n and param integers in u32 range, n <= 2^27, words 1-D, a known codec."""
    fields = (packet.segment_id, packet.n, packet.param)
    if not all(
        type(x) is int and 0 <= x <= U32_MAX for x in fields
    ):  # exactly int: bool and numpy integers take the reference path
        return False
    return packet.words.ndim == 1 and packet.n <= MAX_SEGMENT_LEN and int(packet.codec) in (0, 1, 2)


def encode_message(packets: Sequence[Packet]) -> bytes:
    """The message holding ``packets``; twin of :func:`vgc_ref.encoding.encode_message`.

    The content rules are checked by the decoder's kernel (_payload_ok, one pass over
    each packet's words) and the bytes assembled by :func:`vgc_ref.encoding.assemble_message`.
    Anything the fast check does not pass (a bad packet, a duplicate id, fields that are
    not plain ints, not a list or tuple) goes to the reference encoder, which raises its
    error or, for an unusual but valid input, encodes it: the same bytes and the same
    errors either way.
    """
    if isinstance(packets, (list, tuple)) and all(type(p) is Packet for p in packets):
        ids = {p.segment_id for p in packets}
        if len(ids) == len(packets) and all(
            _fields_ok(p) and _payload_ok(p.words, int(p.codec), p.n, p.param) for p in packets
        ):
            return encoding.assemble_message(list(packets))
    return encoding.encode_message(packets)


def _fast_decode(message) -> list[Packet] | None:
    """The packets of a message the reference decoder accepts; None if it may reject it.

    Numba checks every rule of docs/format.md ("What a decoder rejects": framing, CRC-32,
    content) without saying which one fails; returns None on any failure, and for input
    that is not bytes, bytearray or memoryview. The packets' words are read-only views
    of the message bytes, as the reference decoder's are of its copy.
    """
    if isinstance(message, bytes):
        buf = message
    elif isinstance(message, (bytearray, memoryview)):
        try:
            buf = memoryview(message).tobytes()  # a snapshot, as the reference takes
        except (TypeError, ValueError):
            return None
    else:
        return None
    length = len(buf)
    ok, table = _parse_frame(np.frombuffer(buf, np.uint8))
    if not ok:
        return None
    if zlib.crc32(memoryview(buf)[: length - 4]) != int.from_bytes(buf[length - 4 :], "little"):
        return None
    words = np.frombuffer(buf, "<u4", count=length // 4).astype(np.uint32, copy=False)
    if not _content_ok(words, table):
        return None
    packets = []
    for segment_id, n, codec, param, count, offset, _ in table.tolist():
        first = offset // 4
        packets.append(Packet(segment_id, n, Codec(codec), param, words[first : first + count]))
    return packets


def decode_messages(messages: Sequence[bytes]) -> list[list[Packet]]:
    """Decode P messages; a FormatError gets ``rank``, exactly as the reference's.

    Each message goes through :func:`_fast_decode`; only a message it does not accept is
    decoded by the reference decoder, which then raises the reference's error (or, should
    the fast check ever be stricter than the reference, returns the packets).
    """
    packet_lists = []
    for rank, message in enumerate(check_messages(messages)):
        packets = _fast_decode(message)
        if packets is None:
            try:
                packets = decode_message(message)
            except FormatError as err:
                wrapped = FormatError(err.field, err.offset, f"{err.reason} (message of rank {rank})")
                wrapped.rank = rank
                raise wrapped from err
        packet_lists.append(packets)
    return packet_lists


def accumulate_packets(
    packet_lists: Sequence[Sequence[Packet]],
    sizes: Sequence[int],
    out: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Rank-ordered mean of P workers' packets; twin of :func:`vgc_ref.aggregate.aggregate_packets`."""
    n_ranks = len(packet_lists)
    sizes, segments = rank_ordered_segments(packet_lists, sizes, out)
    result = []
    for j, (n, packets) in enumerate(zip(sizes, segments)):  # packets: rank order
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
        _launch(_accumulate, n, target, words, start, codec, param, n_ranks, CHUNK)
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

    Each message is checked by :func:`_fast_decode` (every rule of docs/format.md, in
    Numba); one it does not accept is handed to the reference decoder, so exactly the
    same messages are rejected with the same errors. The layout and ``out`` checks are
    the reference's own helpers; the accumulation is one parallel kernel per segment.
    """
    return accumulate_packets(decode_messages(messages), sizes, out)


# --------------------------------------------------------------------------------------
# Dense layer: register-tiled ordered products (docs/algorithm.md section 2)
# --------------------------------------------------------------------------------------
#
# out = A^T B in the reference's order, out[i, j] = (+0.0 + a[0,i]*b[0,j]) + ... + a[K-1,i]*b[K-1,j],
# each product and each sum rounded on its own (no FMA). The numba_portable kernel keeps
# its sums in memory (a row of out is read and written once per k); this one keeps the
# sums of a TILE_I x TILE_J tile of out in registers for the whole k loop:
#
#     pack     A -> ap[ib, k, r] = A[k, ib*TILE_I + r], B -> bp[jb, k, c] = B[k, jb*TILE_J + c]
#              (exact copies, zero-padded to whole tiles: a padded row or column only feeds
#              outputs that are never stored, so ragged shapes need no edge code)
#     kernel   prange over row blocks ib (a thread owns whole rows of out; g_W and s_W
#              of a dense layer are two products of one launch); for each column block
#              jb: TILE_I * TILE_J accumulators c_r_c = +0.0, then for k = 0..K-1 in
#              order  c_r_c = c_r_c + ap[ib, k, r] * bp[jb, k, c]; then the tile is stored
#              (its rows and columns inside out only).
#
# The "squares" kernel is the same loop cut into segments of `seg` consecutive k (the P
# positions of one sample of a convolution, docs/algorithm.md section 2.1): the
# accumulators restart at +0.0 for every segment, and at its end the tile's sums t_r_c
# (in memory, from +0.0) become t_r_c + c_r_c * c_r_c, segments in order.
#
# Every element still sees the reference's operations in the reference's order, so the
# bits are the reference's whatever the tile, the thread count or the vector width. The
# accumulators are TILE_I * TILE_J scalar variables (the source is generated below, one
# statement per multiply-add, because Numba has no fixed-size register arrays); LLVM's
# SLP vectorizer packs each row of a tile into vector registers (8 float32 per ymm). Numba
# compiles with the SLP vectorizer off (NUMBA_SLP_VECTORIZE=0), so these kernels alone are
# compiled with it on (_compile_with_slp): without it the tile stays scalar (vmulss/vaddss)
# and runs about 5x slower. Vectorizing a tile's rows needs no reassociation and no
# contraction, so with fastmath off it cannot change a bit; tests/test_tiled_kernels.py
# checks the bits on Hypothesis shapes and values and reads the assembly (packed
# vmulps/vaddps, no vfmadd). docs/performance.md, "Ordered products against BLAS", has
# the measurements that chose 8 x 16 (16 ymm accumulators; CPUs with AVX-512 have 32
# vector registers, AVX2-only ones 16, where the tile would spill).

#: Rows (input features i) and columns (output features j) of a register tile.
TILE_I, TILE_J = 8, 16
#: Below this many multiply-adds a call runs on the calling thread (as numba_portable).
DENSE_SERIAL_BELOW = 1 << 20
#: The kernels: kind -> (base name, signature): Q packed A, Q packed B, Q outs (and seg).
_PACKED = "float32[:, :, :, ::1]"
TILED_KINDS = {
    "product": ("_tiled_tn", f"void({_PACKED}, {_PACKED}, float32[:, :, ::1])"),
    "squares": ("_tiled_sq", f"void({_PACKED}, {_PACKED}, float32[:, :, ::1], int64)"),
}


def _tiled_source(name: str, loop: str, squares: bool) -> str:
    """Source of the tiled kernel ``name``; ``loop`` is "prange" or "range".

    ap: float32[Q, ceil(m / TILE_I), K, TILE_I], bp: float32[Q, ceil(n / TILE_J), K, TILE_J]
    (Q products of packed operands, :func:`_pack`), out: float32[Q, m, n]; the parallel
    loop runs over the Q * ceil(m / TILE_I) row blocks, so Q products share one launch.
    """
    tile = [(r, c) for r in range(TILE_I) for c in range(TILE_J)]
    accumulators = " = ".join(f"c{r}_{c}" for r, c in tile) + " = F32_ZERO"
    body = ["ak = a[k]", "bk = b[k]"]
    body += [f"b{c} = bk[{c}]" for c in range(TILE_J)]
    for r in range(TILE_I):
        body.append(f"a{r} = ak[{r}]")
        body += [f"c{r}_{c} = c{r}_{c} + a{r} * b{c}" for c in range(TILE_J)]
    lines = [
        f"def {name}(ap, bp, out{', seg' if squares else ''}):",
        f'    """{TILE_I} x {TILE_J} tiles of out; vgc_ref/backends/numba_cpu.py, "Dense layer"."""',
        "    blocks = ap.shape[1]",
        "    m, n = out.shape[1], out.shape[2]",
        f"    for t in {loop}(ap.shape[0] * blocks):",
        "        q = t // blocks",
        "        ib = t - q * blocks",
        f"        i0 = ib * {TILE_I}",
        f"        tile = np.empty(({TILE_I}, {TILE_J}), np.float32)",
        "        o = out[q]",
        "        for jb in range(bp.shape[1]):",
        f"            j0 = jb * {TILE_J}",
        "            a = ap[q, ib]",
        "            b = bp[q, jb]",
    ]
    if squares:
        lines += ["            tile[:, :] = F32_ZERO"]
        lines += ["            for k0 in range(0, a.shape[0], seg):", "                " + accumulators]
        lines += ["                for k in range(k0, k0 + seg):"]
        lines += ["                    " + s for s in body]
        lines += [f"                tile[{r}, {c}] = tile[{r}, {c}] + c{r}_{c} * c{r}_{c}" for r, c in tile]
    else:
        lines += ["            " + accumulators, "            for k in range(a.shape[0]):"]
        lines += ["                " + s for s in body]
        lines += [f"            tile[{r}, {c}] = c{r}_{c}" for r, c in tile]
    lines += [
        f"            for r in range(min({TILE_I}, m - i0)):",
        f"                for c in range(min({TILE_J}, n - j0)):",
        "                    o[i0 + r, j0 + c] = tile[r, c]",
    ]
    return "\n".join(lines) + "\n"


def _tiled_kernel(kind: str, parallel: bool, cache: bool = True, name: str | None = None):
    """The generated kernel, jitted (compiled later, by :func:`_compile_with_slp`).

    Compiled under this file's name, so that Numba's on-disk cache can locate it (the
    cache is keyed by file, qualified name and the file's time stamp); the serial twin
    has a name of its own. ``cache=False`` (and a ``name`` of its own) gives a kernel
    whose assembly can be inspected (tests/test_tiled_kernels.py).
    """
    if name is None:
        name = TILED_KINDS[kind][0] + ("" if parallel else "_serial")
    source = _tiled_source(name, "prange" if parallel else "range", kind == "squares")
    # __name__: Numba's cache rebuilds the kernel's globals from the module of that name.
    namespace = {"__name__": __name__, "np": np, "prange": prange, "F32_ZERO": F32_ZERO}
    exec(compile(source, __file__, "exec"), namespace)
    return njit(parallel=parallel, **{**_JIT, "cache": cache})(namespace[name])


def _compile_with_slp(dispatcher, signature: str) -> None:
    """Compile ``dispatcher`` for ``signature`` with LLVM's SLP vectorizer on, for it alone.

    Numba reads ``config.SLP_VECTORIZE`` when it builds the optimisation passes of a
    compilation; it is set only while this one compiles, under Numba's global compiler
    lock so that no other compilation runs meanwhile, and restored after. Each
    compilation first reloads Numba's configuration when a NUMBA_* environment variable
    has changed since the last one, which would reset the setting: the reload is done
    here, before setting it, so the compilation's own finds nothing new. Further
    signatures are disabled: a lazy compilation would run without SLP.
    """
    with global_compiler_lock:
        numba_config.reload_config()
        saved = numba_config.SLP_VECTORIZE
        numba_config.SLP_VECTORIZE = 1
        try:
            dispatcher.compile(signature)
        finally:
            numba_config.SLP_VECTORIZE = saved
    dispatcher.disable_compile()


_TILED_LOCK = threading.Lock()
_TILED: dict[tuple[str, bool], object] = {}


def tiled_kernel(kind: str, parallel: bool):
    """The tiled kernel of ``kind`` (TILED_KINDS), parallel or serial, compiled with SLP on
    first use (or loaded from Numba's cache)."""
    with _TILED_LOCK:
        kernel = _TILED.get((kind, parallel))
        if kernel is None:
            kernel = _tiled_kernel(kind, parallel)
            _compile_with_slp(kernel, TILED_KINDS[kind][1])
            _TILED[kind, parallel] = kernel
    return kernel


def _pack(a: np.ndarray, width: int, squares: bool = False) -> np.ndarray:
    """float32[K, m] -> float32[Q, ceil(m / width), K, width]: blocks of ``width`` columns,
    each contiguous along k, zero-padded at the end (exact copies, one pass over a). Q = 1,
    or 2 with ``squares``: [1] holds the squares of [0], each rounded to float32 (a padding
    zero squares to zero)."""
    k, m = a.shape
    full, rest = divmod(m, width)
    packed = np.empty((1 + squares, full + (rest > 0), k, width), np.float32)
    packed[0, :full].transpose(1, 0, 2)[...] = a[:, : full * width].reshape(k, full, width)
    if rest:
        packed[0, full, :, :rest] = a[:, full * width :]
        packed[0, full, :, rest:] = 0
    if squares:
        np.multiply(packed[0], packed[0], out=packed[1])
    return packed


def _run_tiled(kind: str, args: tuple, work: int) -> None:
    """Run the ``kind`` kernel on ``args``: serial below DENSE_SERIAL_BELOW multiply-adds,
    else parallel under the lock of the parallel kernels."""
    if work < DENSE_SERIAL_BELOW:
        tiled_kernel(kind, False)(*args)
        return
    kernel = tiled_kernel(kind, True)
    with _PARALLEL_LOCK:
        kernel(*args)


def tiled_matmul_tn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A^T B in the fixed order, register-tiled; twin of :func:`vgc_ref.portable.matmul_tn`.

    a: float32[K, m], b: float32[K, n] (checked as the reference checks them); returns
    float32[m, n].
    """
    check_product(a, b, 0, 0)
    out = np.zeros((1, a.shape[1], b.shape[1]), np.float32)
    _run_tiled("product", (_pack(a, TILE_I), _pack(b, TILE_J), out), out.size * a.shape[0])
    return out[0]


def tiled_squared_products(a: np.ndarray, b: np.ndarray, seg: int) -> np.ndarray:
    """sum over segments z of (A_z^T B_z)^2, A_z = a[z*seg : (z+1)*seg] (B_z likewise).

    The exact convolution variance's s_W (twin of the loop in
    :func:`vgc_ref.variance.conv_var`, form "exact"): each A_z^T B_z in the order of
    :func:`tiled_matmul_tn`, squared and added from +0.0, z in order. a: float32[Z*seg, m],
    b: float32[Z*seg, n], seg >= 1; returns float32[m, n].
    """
    check_product(a, b, 0, 0)
    if seg < 1 or a.shape[0] % seg:
        raise InputError("seg", seg, f"must be >= 1 and divide the {a.shape[0]} rows")
    out = np.zeros((1, a.shape[1], b.shape[1]), np.float32)
    _run_tiled("squares", (_pack(a, TILE_I), _pack(b, TILE_J), out, seg), out.size * a.shape[0])
    return out[0]


#: From this many multiply-adds on, :func:`matmul`, :func:`matmul_tn` and :func:`matmul_nt`
#: use the tiled kernel; below, packing costs more than the tiles save and the row-streamed
#: kernels of numba_portable run (the same bits either way). Measured crossover: about
#: 2^18 with 1 thread (docs/performance.md, "The demo's ordered products").
TILED_FROM = 1 << 18


def matmul_tn(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A^T B in the fixed order; twin of :func:`vgc_ref.portable.matmul_tn` (a: [K, m], b: [K, n]).

    The tiled kernel from TILED_FROM multiply-adds on, numba_portable's below.
    """
    check_product(a, b, 0, 0)
    if a.shape[0] * a.shape[1] * b.shape[1] < TILED_FROM:
        return numba_portable.matmul_tn(a, b)
    return tiled_matmul_tn(a, b)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A B in the fixed order over k; twin of :func:`vgc_ref.portable.matmul` (a: [m, K], b: [K, n]).

    ``A B = (A^T)^T B``: the same sums, so :func:`matmul_tn` of the transposed view.
    """
    check_product(a, b, 1, 0)
    return matmul_tn(a.T, b)


def matmul_nt(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A B^T in the fixed order over k; twin of :func:`vgc_ref.portable.matmul_nt` (a: [m, K], b: [n, K])."""
    check_product(a, b, 1, 1)
    return matmul_tn(a.T, b.T)


def dense_grad_var(x: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """g_W, s_W, g_b, s_b of a dense layer; twin of :func:`vgc_ref.variance.dense_grad_var`.

    ``g_W = x^T D`` and ``s_W = (x*x)^T (D*D)``: two products of the register-tiled kernel
    in one launch, the squares rounded to float32 first as in the reference (squaring the
    packed x and D gives the same numbers); ``g_b`` and ``s_b`` the ordered column sums of
    :mod:`vgc_ref.backends.numba_portable`. x: float32[B, in], delta: float32[B, out].
    """
    _check_pair(x, delta)
    xp = _pack(x, TILE_I, squares=True)  # [2, in/8, B, 8]: x, x*x
    dp = _pack(delta, TILE_J, squares=True)  # [2, out/16, B, 16]: D, D*D
    out = np.zeros((2, x.shape[1], delta.shape[1]), np.float32)  # g_W, s_W
    _run_tiled("product", (xp, dp, out), out.size * x.shape[0])
    return out[0], out[1], column_sums(delta), column_sums(delta * delta)


BACKEND = Backend(
    name="numba-cpu",
    vgc_step=vgc_step,
    vgc_step_scratch=vgc_step_scratch,
    strom_step=strom_step,
    check_step=check_step,
    encode_message=encode_message,
    decode_accumulate=decode_accumulate,
    dense_grad_var=dense_grad_var,
    conv_grad_var=numba_conv.conv_grad_var,
)
