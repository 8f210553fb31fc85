"""The numba-cuda backend's kernels, importable without a GPU (to compile them to PTX).

:mod:`vgc_ref.backends.numba_cuda` launches these; this module only defines them, so a
machine with the CUDA toolkit and no GPU can compile every kernel for any target
(:func:`compile_ptx`, used by tests/test_cuda_compile.py). With ``NUMBA_ENABLE_CUDASIM=1``
(set before Numba is imported) the same kernels run on Numba's CUDA simulator.

A VGC step on one segment, all on the device (grid-stride loops over tiles of ``TPB``
elements; ``flags`` is one small int64 array per segment)::

    1. reset   flags <- (no bad index, max |r| bits 0, total 0)
    2. scan    read g, s, r, v (16 B/element): per check, the first bad index (atomic
               min: the lowest index whatever the thread order) and the largest |r|
               bits among the candidates (atomic max); merged per block in shared
               memory first, so one global atomic per block and value at most
    3. write   if flags hold a bad index, nothing (the host raises the reference's
               error afterwards: the state is unchanged). Else E and the send threshold
               from flags; read g, s, r, v again, write r and v (24 B/element); each
               tile's words go to its own stretch of ``scratch`` (tile * TPB + the
               block's exclusive prefix of the send flags), its count to counts[tile]
    4. offsets one block: exclusive prefix sum of the tile counts, in place; the total
               into flags
    5. gather  each tile's words to words[offset:offset + count]: increasing index order,
               whatever the thread timing (no atomic decides an output)

The host then copies ``flags`` (one small copy: the only wait of a step), raises the
error if there is one, and copies ``words[:total]``. Strom is the same with g and r only.

``decode_accumulate`` is one kernel per segment: each block owns a tile of TPB outputs
in shared memory, adds every rank's values for the tile in rank order (a binary search
finds each rank's words for the tile; indices are unique within a rank), divides by P
and writes the tile to ``out`` once.

No FMA, no float64, no flush to zero: every float32 add, subtract, multiply and divide
of the protocol goes through libdevice's round-to-nearest ``fadd_rn``, ``fsub_rn``,
``fmul_rn`` and ``fdiv_rn`` (CUDA's ``__fadd_rn`` etc.), which the compiler never
contracts; float literals are float32. tests/test_cuda_compile.py checks the PTX and the
SASS of every kernel for this. On the simulator they are plain float32 operations.
"""

from __future__ import annotations

import os

import numpy as np
from numba import config, cuda, types

from vgc_ref import quantize

SIMULATOR = bool(config.ENABLE_CUDASIM)


def _threads_per_block() -> int:
    """TPB: 256 on a GPU; 8 on the simulator unless VGC_CUDA_TPB says otherwise.

    Every simulated thread is a Python thread, so the simulator's default is small; the
    tests also run it at the GPU's 256 (VGC_CUDA_TPB=256) on a few inputs.
    """
    raw = os.environ.get("VGC_CUDA_TPB", "8" if SIMULATOR else "256")
    try:
        tpb = int(raw)
    except ValueError:
        tpb = 0
    if tpb < 2 or tpb > 1024 or tpb & (tpb - 1):
        raise ValueError(f"VGC_CUDA_TPB = {raw!r}: must be a power of two in 2 .. 1024")
    return tpb


#: Threads per block (= elements per tile). A power of two.
TPB = _threads_per_block()
#: Blocks per launch (grid-stride loops cover the rest; 2 on the simulator so they wrap).
MAX_BLOCKS = 2 if SIMULATOR else 4096
#: Tile edge of the dense-layer kernel (TILE x TILE threads per block).
TILE = 2 if SIMULATOR else 16

#: Slots of ``flags``: the first bad index of each check (the reference's order,
#: criterion.accumulate), then the largest candidate |r| bits, then the word count.
G_NONFINITE, S_NONFINITE, S_NEGATIVE, RG_OVERFLOW, VS_OVERFLOW = range(5)
N_CHECKS = 5
MAX_BITS = 5
TOTAL = 6
N_FLAGS = 8

F32_MAX = np.float32(np.finfo(np.float32).max)
F32_INF = np.float32(np.inf)
F32_ZERO = np.float32(0)
U32_ABS = 0x7FFFFFFF
MAX_K = quantize.MAX_K
MAX_EXPONENT = quantize.MAX_EXPONENT
ROUND_UP = (1 << 23) - quantize.SQRT2_MANTISSA  # see numba_cpu.ROUND_UP
E_CLAMP = MAX_EXPONENT << 23
SMALLEST_NORMAL_BITS = 1 << 23
BIG = (1 << 62) - 1  # "no bad index" for the atomic min
BIG32 = (1 << 31) - 1  # the same in a block's 32-bit copy (indices < 2^27, |r| bits < 2^31)


# --------------------------------------------------------------------------------------
# Round-to-nearest arithmetic and bit casts
# --------------------------------------------------------------------------------------

if SIMULATOR:

    @cuda.jit(device=True)
    def _fadd(a, b):
        with np.errstate(all="ignore"):  # inf and 0 are results, as on the GPU
            return np.float32(np.float32(a) + np.float32(b))

    @cuda.jit(device=True)
    def _fsub(a, b):
        with np.errstate(all="ignore"):
            return np.float32(np.float32(a) - np.float32(b))

    @cuda.jit(device=True)
    def _fmul(a, b):
        with np.errstate(all="ignore"):
            return np.float32(np.float32(a) * np.float32(b))

    @cuda.jit(device=True)
    def _fdiv(a, b):
        with np.errstate(all="ignore"):
            return np.float32(np.float32(a) / np.float32(b))

    @cuda.jit(device=True)
    def _bits(x):
        return int(np.float32(x).view(np.uint32))

    @cuda.jit(device=True)
    def _float(b):
        return np.uint32(b).view(np.float32)

else:  # pragma: no cover - compiled for a GPU
    from numba.cuda import libdevice

    @cuda.jit(device=True, inline=True)
    def _fadd(a, b):
        return libdevice.fadd_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _fsub(a, b):
        return libdevice.fsub_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _fmul(a, b):
        return libdevice.fmul_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _fdiv(a, b):
        return libdevice.fdiv_rn(a, b)

    @cuda.jit(device=True, inline=True)
    def _bits(x):
        return np.int64(libdevice.float_as_int(x)) & 0xFFFFFFFF

    @cuda.jit(device=True, inline=True)
    def _float(b):
        return libdevice.int_as_float(np.int32(np.uint32(b)))


@cuda.jit(device=True)
def _imin(a, b):
    """min of two integers (the built-in numba.cuda rejects the two-argument min())."""
    return a if a < b else b


@cuda.jit(device=True)
def _imax(a, b):
    return a if a > b else b


@cuda.jit(device=True)
def _is_finite(x):
    return abs(x) <= F32_MAX


@cuda.jit(device=True)
def _exponent_field(abs_bits):
    """quantize.rounded_exponent of |r| from its bits, in bits 30..23."""
    return _imin(abs_bits + ROUND_UP, E_CLAMP) & 0x7F800000


@cuda.jit(device=True)
def _largest_exponent(max_bits):
    """E from the largest candidate |r| bits (0: none); numba_cpu._largest_exponent."""
    if max_bits < SMALLEST_NORMAL_BITS:
        return 0
    return _imin((max_bits + ROUND_UP) >> 23, MAX_EXPONENT)


@cuda.jit(device=True)
def _send_threshold(E, tau):
    """Smallest |r| a candidate needs to be sent given E; numba_cpu._send_threshold."""
    if E == 0:
        return F32_INF
    low = _imax(((E - MAX_K) << 23) - ROUND_UP, SMALLEST_NORMAL_BITS)
    t = _float(low)
    return t if t >= tau else tau


@cuda.jit(device=True)
def _any_bad(flags):
    bad = False
    for c in range(N_CHECKS):
        if flags[c] != BIG:
            bad = True
    return bad


@cuda.jit(device=True)
def _block_exclusive_scan(flag, buf):
    """Exclusive prefix sum of ``flag`` over the block (Hillis-Steele in shared memory).

    Returns (this thread's prefix, the block total). Every thread of the block calls it.
    """
    t = cuda.threadIdx.x
    buf[t] = flag
    cuda.syncthreads()
    step = 1
    while step < TPB:
        x = buf[t - step] if t >= step else 0
        cuda.syncthreads()
        buf[t] += x
        cuda.syncthreads()
        step *= 2
    total = buf[TPB - 1]
    inclusive = buf[t]
    cuda.syncthreads()
    return inclusive - flag, total


# --------------------------------------------------------------------------------------
# A step: reset, scan, write, offsets, gather
# --------------------------------------------------------------------------------------


@cuda.jit
def reset_kernel(flags):
    """flags <- no bad index, max bits 0, total 0 (one thread)."""
    if cuda.grid(1) == 0:
        for c in range(N_CHECKS):
            flags[c] = BIG
        flags[MAX_BITS] = 0
        flags[TOTAL] = 0


@cuda.jit
def scan_kernel(g, s, r, v, alpha, tau, has_s, flags):
    """Read-only pass: first bad index per check and largest candidate |r| bits.

    Each thread keeps its own minima and maximum over its grid-stride elements and
    merges them into the block's copy in shared memory (32-bit shared-memory atomics,
    single instructions; only for values it has); then one thread merges the block's
    values into ``flags`` (one global atomic per value the block has, none for the
    checks in the common case of clean input). With has_s False (Strom, or a check
    without s) only g and r + g are checked.
    """
    block = cuda.shared.array(N_FLAGS, np.int32)  # 32-bit: native shared atomics
    t = cuda.threadIdx.x
    if t == 0:
        for c in range(N_CHECKS):
            block[c] = BIG32
        block[MAX_BITS] = 0
    cuda.syncthreads()
    n = g.shape[0]
    b_g = BIG
    b_s = BIG
    b_neg = BIG
    b_rg = BIG
    b_vs = BIG
    best = 0
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        gi = g[i]
        ri = _fadd(r[i], gi)
        if not _is_finite(gi):
            b_g = _imin(b_g, i)
        if not _is_finite(ri):
            b_rg = _imin(b_rg, i)
        if has_s:
            si = s[i]
            vi = _fadd(v[i], si)
            if not _is_finite(si):
                b_s = _imin(b_s, i)
            if si < 0:
                b_neg = _imin(b_neg, i)
            if not _is_finite(vi):
                b_vs = _imin(b_vs, i)
            ar = abs(ri)
            if _fmul(ri, ri) > _fmul(alpha, vi) and ar >= tau and _is_finite(ri) and _is_finite(vi):
                best = _imax(best, _bits(ar))
    if b_g != BIG:
        cuda.atomic.min(block, G_NONFINITE, np.int32(b_g))
    if b_s != BIG:
        cuda.atomic.min(block, S_NONFINITE, np.int32(b_s))
    if b_neg != BIG:
        cuda.atomic.min(block, S_NEGATIVE, np.int32(b_neg))
    if b_rg != BIG:
        cuda.atomic.min(block, RG_OVERFLOW, np.int32(b_rg))
    if b_vs != BIG:
        cuda.atomic.min(block, VS_OVERFLOW, np.int32(b_vs))
    if best > 0:
        cuda.atomic.max(block, MAX_BITS, np.int32(best))
    cuda.syncthreads()
    if t == 0:
        for c in range(N_CHECKS):
            if block[c] != BIG32:
                cuda.atomic.min(flags, c, np.int64(block[c]))
        if block[MAX_BITS] > 0:
            cuda.atomic.max(flags, MAX_BITS, np.int64(block[MAX_BITS]))


@cuda.jit(device=True)
def _vgc_send(g, s, r, v, alpha, threshold, i, n):
    """(send, ri, vi) for element i (send False past the end)."""
    if i >= n:
        return False, F32_ZERO, F32_ZERO
    ri = _fadd(r[i], g[i])  # 1.
    vi = _fadd(v[i], s[i])
    send = _fmul(ri, ri) > _fmul(alpha, vi) and abs(ri) >= threshold  # 2. + 4.
    return send, ri, vi


@cuda.jit
def vgc_write_kernel(g, s, r, v, alpha, zeta, tau, feedback, flags, counts, scratch):
    """Steps 1-5 of a VGC step; tile t's words to scratch[t * TPB:], its count to counts[t]."""
    buf = cuda.shared.array(TPB, np.int64)
    if _any_bad(flags):
        return  # the host raises; nothing is written
    E = _largest_exponent(flags[MAX_BITS])
    threshold = _send_threshold(E, tau)
    n = g.shape[0]
    for tile in range(cuda.blockIdx.x, counts.shape[0], cuda.gridDim.x):
        i = tile * TPB + cuda.threadIdx.x
        send, ri, vi = _vgc_send(g, s, r, v, alpha, threshold, i, n)
        prefix, total = _block_exclusive_scan(1 if send else 0, buf)
        if send:
            b = _bits(ri)
            e_field = _exponent_field(b & U32_ABS)  # 3.
            sign = b >> 31
            scratch[tile * TPB + prefix] = (i << 5) | (sign << 4) | (E - (e_field >> 23))
            if feedback:
                r[i] = _fsub(ri, _float((sign << 31) | e_field))  # 5. exact
            else:
                r[i] = F32_ZERO
            v[i] = F32_ZERO
        elif i < n:
            r[i] = ri
            v[i] = _fmul(zeta, vi)
        if cuda.threadIdx.x == 0:
            counts[tile] = total


@cuda.jit
def strom_write_kernel(g, r, tau, flags, counts, scratch):
    """Strom's step: |r + g| >= tau is sent as sign * tau; words as in vgc_write_kernel."""
    buf = cuda.shared.array(TPB, np.int64)
    if _any_bad(flags):
        return
    n = g.shape[0]
    tau_bits = _bits(tau)
    for tile in range(cuda.blockIdx.x, counts.shape[0], cuda.gridDim.x):
        i = tile * TPB + cuda.threadIdx.x
        ri = _fadd(r[i], g[i]) if i < n else F32_ZERO
        send = i < n and abs(ri) >= tau
        prefix, total = _block_exclusive_scan(1 if send else 0, buf)
        if send:
            sign = _bits(ri) >> 31
            scratch[tile * TPB + prefix] = (i << 1) | sign
            r[i] = _fsub(ri, _float((sign << 31) | tau_bits))
        elif i < n:
            r[i] = ri
        if cuda.threadIdx.x == 0:
            counts[tile] = total


@cuda.jit
def offsets_kernel(counts, flags):
    """One block: counts <- exclusive prefix sum of counts; flags[TOTAL] <- the sum.

    Thread t sums a contiguous run of the counts; thread 0 turns the TPB run sums into
    prefixes (a serial loop over shared memory: one launch per step, a few
    microseconds); each thread then rewrites its run from its prefix.
    """
    runs = cuda.shared.array(TPB, np.int64)
    if _any_bad(flags):
        return
    m = counts.shape[0]
    t = cuda.threadIdx.x
    per = (m + TPB - 1) // TPB
    lo = _imin(t * per, m)
    hi = _imin(lo + per, m)
    run = 0
    for j in range(lo, hi):
        run += counts[j]
    runs[t] = run
    cuda.syncthreads()
    if t == 0:
        total = 0
        for k in range(TPB):
            c = runs[k]
            runs[k] = total
            total += c
        flags[TOTAL] = total
    cuda.syncthreads()
    prefix = runs[t]
    for j in range(lo, hi):
        c = counts[j]
        counts[j] = prefix
        prefix += c


@cuda.jit
def gather_kernel(scratch, offsets, flags, words):
    """words[offsets[t] + j] <- scratch[t * TPB + j] for each tile t's j < its count."""
    if _any_bad(flags):
        return
    m = offsets.shape[0]
    total = flags[TOTAL]
    for tile in range(cuda.blockIdx.x, m, cuda.gridDim.x):
        start = offsets[tile]
        end = offsets[tile + 1] if tile + 1 < m else total
        for j in range(cuda.threadIdx.x, end - start, TPB):
            words[start + j] = scratch[tile * TPB + j]


# --------------------------------------------------------------------------------------
# Decode and accumulate: add in rank order, divide, write once
# --------------------------------------------------------------------------------------


@cuda.jit(device=True)
def _lower_bound(words, lo, hi, key):
    """First j in [lo, hi) with words[j] >= key (words sorted ascending)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if np.int64(words[mid]) < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@cuda.jit
def decode_kernel(out, words, ranks, p32):
    """g_hat for one segment: out[i] = (sum over ranks, in rank order, of q) / float32(P).

    ranks[p] = (start, stop, codec, param): rank p's words are words[start:stop], its
    codec 0 DENSE, 1 VGC_Q4 or 2 STROM, its param E or tau's bits. Each block owns tiles of
    TPB outputs: acc = +0.0, then each rank's values for the tile are added (a rank's
    indices are unique, so no two threads add to one element at once; a barrier
    separates the ranks), then acc / P goes to out. Untouched elements give
    +0.0 / P = +0.0, as in the reference.
    """
    acc = cuda.shared.array(TPB, np.float32)
    bounds = cuda.shared.array(2, np.int64)
    n = out.shape[0]
    t = cuda.threadIdx.x
    n_ranks = ranks.shape[0]
    for tile in range(cuda.blockIdx.x, (n + TPB - 1) // TPB, cuda.gridDim.x):
        base = tile * TPB
        acc[t] = F32_ZERO
        cuda.syncthreads()
        for p in range(n_ranks):
            start = ranks[p, 0]
            stop = ranks[p, 1]
            codec = ranks[p, 2]
            param = ranks[p, 3]
            if codec == 0:  # DENSE: word j is element j
                if base + t < n:
                    acc[t] = _fadd(acc[t], _float(words[start + base + t]))
            else:
                shift = 5 if codec == 1 else 1
                if t == 0:
                    lo = _lower_bound(words, start, stop, np.int64(base) << shift)
                    bounds[0] = lo
                    bounds[1] = _lower_bound(words, lo, stop, np.int64(base + TPB) << shift)
                cuda.syncthreads()
                for j in range(bounds[0] + t, bounds[1], TPB):
                    w = np.int64(words[j])
                    if codec == 1:  # VGC_Q4
                        q = _float((((w >> 4) & 1) << 31) | ((param - (w & 0xF)) << 23))
                    else:  # STROM
                        q = _float(((w & 1) << 31) | param)
                    k = (w >> shift) - base
                    acc[k] = _fadd(acc[k], q)
            cuda.syncthreads()
        if base + t < n:
            out[base + t] = _fdiv(acc[t], p32)
        cuda.syncthreads()


# --------------------------------------------------------------------------------------
# The dense layer's gradient and variance term, in the fixed order of docs/algorithm.md
# --------------------------------------------------------------------------------------


@cuda.jit
def dense_grad_var_kernel(x, delta, g_w, s_w):
    """g_W[i, j] and s_W[i, j], one thread per output element, b = 0 .. B-1 in order.

    g_W[i, j] = +0.0 (+) fl(x[0, i] D[0, j]) (+) fl(x[1, i] D[1, j]) ...;
    s_W[i, j] = the same with fl(fl(x[b, i]^2) fl(D[b, j]^2)). Every product and sum is
    one rounded float32 operation. Blocks of TILE x TILE threads own tiles of outputs
    (a grid-stride loop over tiles, so any size launches) and walk the batch in steps
    of TILE rows: a TILE x TILE tile of x and of D is loaded into shared memory once
    (coalesced, along i and along j) and used by every thread for both sums.
    """
    xs = cuda.shared.array((TILE, TILE), np.float32)  # [b, i]
    ds = cuda.shared.array((TILE, TILE), np.float32)  # [b, j]
    batch, n_in = x.shape
    n_out = delta.shape[1]
    tx = cuda.threadIdx.x  # along out (j)
    ty = cuda.threadIdx.y  # along in (i)
    tiles_j = (n_out + TILE - 1) // TILE
    n_tiles = tiles_j * ((n_in + TILE - 1) // TILE)
    for tile in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
        i0 = (tile // tiles_j) * TILE
        j0 = (tile % tiles_j) * TILE
        g = F32_ZERO
        s = F32_ZERO
        for b0 in range(0, batch, TILE):
            b = b0 + ty
            xs[ty, tx] = x[b, i0 + tx] if b < batch and i0 + tx < n_in else F32_ZERO
            ds[ty, tx] = delta[b, j0 + tx] if b < batch and j0 + tx < n_out else F32_ZERO
            cuda.syncthreads()
            for k in range(_imin(TILE, batch - b0)):
                a = xs[k, ty]  # x[b0 + k, i0 + ty]
                d = ds[k, tx]  # D[b0 + k, j0 + tx]
                g = _fadd(g, _fmul(a, d))
                s = _fadd(s, _fmul(_fmul(a, a), _fmul(d, d)))
            cuda.syncthreads()
        if i0 + ty < n_in and j0 + tx < n_out:
            g_w[i0 + ty, j0 + tx] = g
            s_w[i0 + ty, j0 + tx] = s


@cuda.jit
def bias_grad_var_kernel(delta, g_b, s_b):
    """g_b[j] = +0.0 (+) D[0, j] (+) D[1, j] ...; s_b[j] the same with fl(D[b, j]^2)."""
    batch = delta.shape[0]
    for j in range(cuda.grid(1), delta.shape[1], cuda.gridsize(1)):
        g = F32_ZERO
        s = F32_ZERO
        for b in range(batch):
            d = delta[b, j]
            g = _fadd(g, d)
            s = _fadd(s, _fmul(d, d))
        g_b[j] = g
        s_b[j] = s


# --------------------------------------------------------------------------------------
# The launch sites' argument types, for compiling without a GPU
# --------------------------------------------------------------------------------------

_f32 = types.float32
_v32 = types.float32[::1]
_m32 = types.float32[:, ::1]
_i64 = types.int64[::1]
_u32 = types.uint32[::1]

#: kernel name -> (kernel, argument types as numba_cuda's launches pass them)
SIGNATURES = {
    "reset_kernel": (reset_kernel, (_i64,)),
    "scan_kernel": (scan_kernel, (_v32, _v32, _v32, _v32, _f32, _f32, types.boolean, _i64)),
    "vgc_write_kernel": (
        vgc_write_kernel,
        (_v32, _v32, _v32, _v32, _f32, _f32, _f32, types.boolean, _i64, _i64, _u32),
    ),
    "strom_write_kernel": (strom_write_kernel, (_v32, _v32, _f32, _i64, _i64, _u32)),
    "offsets_kernel": (offsets_kernel, (_i64, _i64)),
    "gather_kernel": (gather_kernel, (_u32, _i64, _i64, _u32)),
    "decode_kernel": (decode_kernel, (_v32, _u32, types.int64[:, ::1], _f32)),
    "dense_grad_var_kernel": (dense_grad_var_kernel, (_m32, _m32, _m32, _m32)),
    "bias_grad_var_kernel": (bias_grad_var_kernel, (_m32, _v32, _v32)),
}

#: The kernels that divide (div.rn.f32). Every kernel's results are bit-exact (the dense
#: layer's sums have a fixed order too), so none may hold an FMA, except for the FFMA of
#: the correctly rounded division sequence ptxas makes of div.rn.f32 (cuda_check).
DIVIDES = {"decode_kernel"}


def compile_ptx(cc: tuple[int, int]) -> dict[str, str]:
    """PTX of every kernel for compute capability ``cc``, e.g. (9, 0); needs libNVVM.

    Raises RuntimeError on the simulator (it compiles nothing).
    """
    if SIMULATOR:
        raise RuntimeError("the CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1): nothing to compile")
    from unittest import mock

    from numba.cuda import dispatcher

    class _Target:  # what the device functions' compiler asks the current GPU for
        compute_capability = tuple(cc)

    out = {}
    # Device functions are compiled for "the current device"; without a GPU there is
    # none, so it is this target (one cc per process: compiled device functions are kept).
    with mock.patch.object(dispatcher, "get_current_device", _Target, create=True):
        for name, (kernel, argtypes) in SIGNATURES.items():
            ptx, _ = cuda.compile_ptx(kernel.py_func, argtypes, cc=cc)
            out[name] = ptx
    return out
