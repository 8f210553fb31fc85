"""CUDA backend (``numba.cuda`` kernels) with the NumPy reference's exact results.

Each public function has the signature of its reference twin (named in its docstring)
and takes and returns host NumPy arrays; the kernels run on the device. Without a GPU
the same kernels run on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before
Numba is first imported), which is how CI tests them.

Which CUDA target: the code uses only the ``numba.cuda`` API. Numba's built-in CUDA
target is deprecated in favour of NVIDIA's ``numba-cuda`` package, which takes over the
``numba.cuda`` name when installed; the project's ``cuda`` extra installs it
(``pip install -e '.[cuda]'``), and that is what a GPU machine should use. The default
install does not need it: the simulator ships with Numba itself. See
docs/performance.md.

A VGC step on one segment (grid-stride loops over tiles of ``TPB`` elements)::

    1. scan    read-only: the first bad index of each check (atomic min: it is the
               lowest index whatever the order of the threads) and the largest |r|
               bits among the candidates (atomic max). Copied to the host; an error is
               raised here, before anything was written.
    2. count   with E known, each tile counts its sent elements (a block reduction).
    3. scan    an exclusive prefix sum over the tile counts gives each tile's first
               word; words are therefore in increasing index order. No atomic decides
               where a word goes.
    4. write   each tile recomputes its flags, takes a block-level exclusive scan of
               them for the word positions, writes the words and updates r and v.

No FMA: every float32 add, subtract and multiply of the semantics goes through the
round-to-nearest intrinsics ``__fadd_rn``, ``__fsub_rn`` and ``__fmul_rn`` (libdevice),
which the compiler never contracts. On the simulator they are plain float32 operations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import config, cuda

from vgc_ref.aggregate import rank_ordered_segments
from vgc_ref.backends import Backend
from vgc_ref.backends.numba_cpu import (
    G_NONFINITE,
    N_CHECKS,
    RG_OVERFLOW,
    S_NEGATIVE,
    S_NONFINITE,
    VS_OVERFLOW,
    _check_vectors,
    _largest_exponent,
    _raise_first_bad,
    _send_threshold,
    decode_messages,
)
from vgc_ref.packet import Codec, Packet
from vgc_ref.params import StromParams, VGCParams
from vgc_ref.state import SegmentState
from vgc_ref.variance import _check_pair

SIMULATOR = bool(config.ENABLE_CUDASIM)

if not SIMULATOR and not cuda.is_available():
    raise ImportError(
        "numba-cuda backend: no usable CUDA GPU (numba.cuda.is_available() is False); "
        "set NUMBA_ENABLE_CUDASIM=1 before importing numba to run it on the CUDA simulator"
    )

#: Threads per block (= elements per tile). Small on the simulator, where every thread
#: is a Python thread.
TPB = 8 if SIMULATOR else 256
#: Blocks per launch (grid-stride loops cover the rest).
MAX_BLOCKS = 2 if SIMULATOR else 1024
#: Tile edge of the dense-layer kernel.
TILE = 2 if SIMULATOR else 16

F32_MAX = np.float32(np.finfo(np.float32).max)
U32_ABS = 0x7FFFFFFF
ROUND_UP = (1 << 23) - 0x3504F3  # see numba_cpu.ROUND_UP
E_CLAMP = 254 << 23
BIG = np.int64(1) << 62  # "no bad index yet" for the atomic min


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
        with np.errstate(all="ignore"):  # inf and 0 are results, as on the GPU
            return np.float32(np.float32(a) - np.float32(b))

    @cuda.jit(device=True)
    def _fmul(a, b):
        with np.errstate(all="ignore"):  # inf and 0 are results, as on the GPU
            return np.float32(np.float32(a) * np.float32(b))

    @cuda.jit(device=True)
    def _fdiv(a, b):
        with np.errstate(all="ignore"):  # inf and 0 are results, as on the GPU
            return np.float32(np.float32(a) / np.float32(b))

    @cuda.jit(device=True)
    def _bits(x):
        return int(np.float32(x).view(np.uint32))

    @cuda.jit(device=True)
    def _float(b):
        return np.uint32(b).view(np.float32)

else:  # pragma: no cover - needs a GPU
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
def _is_finite(x):
    return abs(x) <= F32_MAX


@cuda.jit(device=True)
def _exponent_field(abs_bits):
    """quantize.rounded_exponent of |r| from its bits, in bits 30..23."""
    return min(abs_bits + ROUND_UP, E_CLAMP) & 0x7F800000


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
# Kernels
# --------------------------------------------------------------------------------------


@cuda.jit
def _scan_kernel(g, s, r, v, alpha, tau, has_s, bad, max_bits):
    """Read-only pass: atomic min of the first bad index per check, atomic max of |r| bits."""
    n = g.shape[0]
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for i in range(start, n, stride):
        gi = g[i]
        ri = _fadd(r[i], gi)
        if not _is_finite(gi):
            cuda.atomic.min(bad, G_NONFINITE, i)
        if not _is_finite(ri):
            cuda.atomic.min(bad, RG_OVERFLOW, i)
        if has_s:
            si = s[i]
            vi = _fadd(v[i], si)
            if not _is_finite(si):
                cuda.atomic.min(bad, S_NONFINITE, i)
            if si < 0:
                cuda.atomic.min(bad, S_NEGATIVE, i)
            if not _is_finite(vi):
                cuda.atomic.min(bad, VS_OVERFLOW, i)
            ar = abs(ri)
            if _fmul(ri, ri) > _fmul(alpha, vi) and ar >= tau and _is_finite(ri) and _is_finite(vi):
                cuda.atomic.max(max_bits, 0, _bits(ar))


@cuda.jit(device=True)
def _vgc_send(g, s, r, v, alpha, threshold, i, n):
    """(send, ri, vi) for element i (send False past the end)."""
    if i >= n:
        return False, np.float32(0), np.float32(0)
    ri = _fadd(r[i], g[i])  # 1.
    vi = _fadd(v[i], s[i])
    send = _fmul(ri, ri) > _fmul(alpha, vi) and abs(ri) >= threshold  # 2. + 4.
    return send, ri, vi


@cuda.jit
def _vgc_count_kernel(g, s, r, v, alpha, threshold, tile_counts):
    """Per tile of TPB elements: how many are sent (block reduction)."""
    buf = cuda.shared.array(TPB, np.int64)
    n = g.shape[0]
    for tile in range(cuda.blockIdx.x, tile_counts.shape[0], cuda.gridDim.x):
        i = tile * TPB + cuda.threadIdx.x
        send, _, _ = _vgc_send(g, s, r, v, alpha, threshold, i, n)
        _, total = _block_exclusive_scan(1 if send else 0, buf)
        if cuda.threadIdx.x == 0:
            tile_counts[tile] = total


@cuda.jit
def _vgc_write_kernel(g, s, r, v, alpha, zeta, threshold, feedback, E, tile_offset, words):
    """Per tile: words at tile_offset + block prefix; r and v updated (steps 1-5)."""
    buf = cuda.shared.array(TPB, np.int64)
    n = g.shape[0]
    for tile in range(cuda.blockIdx.x, tile_offset.shape[0], cuda.gridDim.x):
        i = tile * TPB + cuda.threadIdx.x
        send, ri, vi = _vgc_send(g, s, r, v, alpha, threshold, i, n)
        prefix, _ = _block_exclusive_scan(1 if send else 0, buf)
        if send:
            b = _bits(ri)
            e_field = _exponent_field(b & U32_ABS)  # 3.
            sign = b >> 31
            words[tile_offset[tile] + prefix] = (i << 5) | (sign << 4) | (E - (e_field >> 23))
            if feedback:
                r[i] = _fsub(ri, _float((sign << 31) | e_field))  # 5. exact
            else:
                r[i] = np.float32(0)
            v[i] = np.float32(0)
        elif i < n:
            r[i] = ri
            v[i] = _fmul(zeta, vi)


@cuda.jit
def _strom_count_kernel(g, r, tau, tile_counts):
    buf = cuda.shared.array(TPB, np.int64)
    n = g.shape[0]
    for tile in range(cuda.blockIdx.x, tile_counts.shape[0], cuda.gridDim.x):
        i = tile * TPB + cuda.threadIdx.x
        send = i < n and abs(_fadd(r[i], g[i])) >= tau
        _, total = _block_exclusive_scan(1 if send else 0, buf)
        if cuda.threadIdx.x == 0:
            tile_counts[tile] = total


@cuda.jit
def _strom_write_kernel(g, r, tau, tile_offset, words):
    buf = cuda.shared.array(TPB, np.int64)
    n = g.shape[0]
    for tile in range(cuda.blockIdx.x, tile_offset.shape[0], cuda.gridDim.x):
        i = tile * TPB + cuda.threadIdx.x
        ri = _fadd(r[i], g[i]) if i < n else np.float32(0)
        send = i < n and abs(ri) >= tau
        prefix, _ = _block_exclusive_scan(1 if send else 0, buf)
        if send:
            sign = _bits(ri) >> 31
            words[tile_offset[tile] + prefix] = (i << 1) | sign
            r[i] = _fsub(ri, _float((sign << 31) | _bits(tau)))
        elif i < n:
            r[i] = ri


@cuda.jit
def _add_words_kernel(acc, words, codec, param):
    """acc[i] += q for one rank's packet (indices unique: no two threads share an i)."""
    start = cuda.grid(1)
    stride = cuda.gridsize(1)
    for j in range(start, words.shape[0], stride):
        w = np.int64(words[j])
        if codec == 0:  # DENSE
            i = j
            q = _float(w)
        elif codec == 1:  # VGC_Q4
            i = w >> 5
            q = _float((((w >> 4) & 1) << 31) | ((param - (w & 0xF)) << 23))
        else:  # STROM
            i = w >> 1
            q = _float(((w & 1) << 31) | param)
        acc[i] = _fadd(acc[i], q)


@cuda.jit
def _divide_kernel(acc, p32):
    start = cuda.grid(1)
    for i in range(start, acc.shape[0], cuda.gridsize(1)):
        acc[i] = _fdiv(acc[i], p32)


@cuda.jit
def _dense_grad_var_kernel(x, delta, g_w, s_w):
    """g_W = x^T D and s_W = (x*x)^T (D*D) from the same shared-memory tiles.

    Block (bi, bj) owns a TILE x TILE block of outputs; it walks the batch in steps of
    TILE rows, loading a TILE x TILE tile of x and of D once and using each for both
    products. Sums run over z = 0 .. B-1 in order, one rounded multiply and one rounded
    add at a time (no FMA).
    """
    xs = cuda.shared.array((TILE, TILE), np.float32)
    ds = cuda.shared.array((TILE, TILE), np.float32)
    batch, n_in = x.shape
    n_out = delta.shape[1]
    tx = cuda.threadIdx.x  # along out
    ty = cuda.threadIdx.y  # along in
    row = cuda.blockIdx.y * TILE + ty  # in
    col = cuda.blockIdx.x * TILE + tx  # out
    g = np.float32(0)
    s = np.float32(0)
    for z0 in range(0, batch, TILE):
        # Thread (ty, tx) loads x[z0 + tx, in-tile row ty] and D[z0 + ty, out column tx].
        zx = z0 + tx
        xin = cuda.blockIdx.y * TILE + ty
        xs[ty, tx] = x[zx, xin] if zx < batch and xin < n_in else np.float32(0)
        zd = z0 + ty
        ds[ty, tx] = delta[zd, col] if zd < batch and col < n_out else np.float32(0)
        cuda.syncthreads()
        for k in range(min(TILE, batch - z0)):
            a = xs[ty, k]  # x[z0 + k, row]
            d = ds[k, tx]  # D[z0 + k, col]
            g = _fadd(g, _fmul(a, d))
            s = _fadd(s, _fmul(_fmul(a, a), _fmul(d, d)))
        cuda.syncthreads()
    if row < n_in and col < n_out:
        g_w[row, col] = g
        s_w[row, col] = s


@cuda.jit
def _bias_grad_var_kernel(delta, g_b, s_b):
    """g_b = sum_z D_z and s_b = sum_z D_z^2, summed over z in order."""
    start = cuda.grid(1)
    batch = delta.shape[0]
    for j in range(start, delta.shape[1], cuda.gridsize(1)):
        g = np.float32(0)
        s = np.float32(0)
        for z in range(batch):
            d = delta[z, j]
            g = _fadd(g, d)
            s = _fadd(s, _fmul(d, d))
        g_b[j] = g
        s_b[j] = s


# --------------------------------------------------------------------------------------
# Host wrappers
# --------------------------------------------------------------------------------------


def _blocks(n_items: int) -> int:
    return max(1, min(MAX_BLOCKS, math.ceil(n_items / TPB)))


def _tiles(n: int) -> int:
    return max(1, math.ceil(n / TPB))


def _scan(state: SegmentState, g, s, alpha, tau):
    """Validate on the device; raise the reference's error. Returns device arrays and E bits."""
    n = state.n
    has_s = s is not None
    d_g = cuda.to_device(np.ascontiguousarray(g))
    d_s = cuda.to_device(np.ascontiguousarray(s)) if has_s else d_g
    d_r = cuda.to_device(np.ascontiguousarray(state.r))
    d_v = cuda.to_device(np.ascontiguousarray(state.v)) if has_s else d_r
    d_bad = cuda.to_device(np.full(N_CHECKS, BIG, np.int64))
    d_max = cuda.to_device(np.zeros(1, np.int64))
    if n > 0:
        _scan_kernel[_blocks(n), TPB](d_g, d_s, d_r, d_v, alpha, tau, has_s, d_bad, d_max)
    bad = d_bad.copy_to_host()
    bad[bad == BIG] = -1
    _raise_first_bad(bad.reshape(1, N_CHECKS), state, g, s)
    return d_g, d_s, d_r, d_v, int(d_max.copy_to_host()[0])


def _tile_offsets(d_counts) -> tuple[np.ndarray, int]:
    """Exclusive prefix sum over the tiles' counts (on the host: one small copy)."""
    counts = d_counts.copy_to_host()
    offset = np.zeros(counts.size, np.int64)
    np.cumsum(counts[:-1], out=offset[1:])
    return offset, int(counts.sum())


def check_step(state: SegmentState, g: np.ndarray, s: np.ndarray | None = None) -> None:
    """Validate one step's inputs on the device; twin of :func:`vgc_ref.criterion.accumulate`."""
    _check_vectors(state, g, s)
    _scan(state, g, s, np.float32(1), np.float32(0))


def vgc_step(state: SegmentState, g: np.ndarray, s: np.ndarray, params: VGCParams) -> Packet:
    """One VGC step on one segment; twin of :func:`vgc_ref.criterion.vgc_step`."""
    if not isinstance(params, VGCParams):
        raise TypeError(f"params must be VGCParams, not {type(params).__name__}")
    _check_vectors(state, g, s)
    n = state.n
    d_g, d_s, d_r, d_v, max_bits = _scan(state, g, s, params.alpha32, params.tau32)
    E = _largest_exponent(max_bits)
    threshold = _send_threshold(E, params.tau32)
    n_tiles = _tiles(n)
    d_counts = cuda.to_device(np.zeros(n_tiles, np.int64))
    blocks = min(MAX_BLOCKS, n_tiles)
    _vgc_count_kernel[blocks, TPB](d_g, d_s, d_r, d_v, params.alpha32, threshold, d_counts)
    offset, total = _tile_offsets(d_counts)
    d_words = cuda.to_device(np.zeros(max(total, 1), np.uint32))
    feedback = params.residual == "feedback"
    _vgc_write_kernel[blocks, TPB](
        d_g,
        d_s,
        d_r,
        d_v,
        params.alpha32,
        params.zeta32,
        threshold,
        feedback,
        E,
        cuda.to_device(offset),
        d_words,
    )
    state.r[...] = d_r.copy_to_host()
    state.v[...] = d_v.copy_to_host()
    words = d_words.copy_to_host()[:total]
    return Packet(state.segment_id, n, Codec.VGC_Q4, E, words)


def strom_step(state: SegmentState, g: np.ndarray, params: StromParams) -> Packet:
    """One step of Strom's baseline; twin of :func:`vgc_ref.criterion.strom_step`."""
    if not isinstance(params, StromParams):
        raise TypeError(f"params must be StromParams, not {type(params).__name__}")
    _check_vectors(state, g, None)
    n = state.n
    d_g, _, d_r, _, _ = _scan(state, g, None, np.float32(1), params.tau32)
    n_tiles = _tiles(n)
    d_counts = cuda.to_device(np.zeros(n_tiles, np.int64))
    blocks = min(MAX_BLOCKS, n_tiles)
    _strom_count_kernel[blocks, TPB](d_g, d_r, params.tau32, d_counts)
    offset, total = _tile_offsets(d_counts)
    d_words = cuda.to_device(np.zeros(max(total, 1), np.uint32))
    _strom_write_kernel[blocks, TPB](d_g, d_r, params.tau32, cuda.to_device(offset), d_words)
    state.r[...] = d_r.copy_to_host()
    tau_bits = int(params.tau32.view(np.uint32))
    return Packet(state.segment_id, n, Codec.STROM, tau_bits, d_words.copy_to_host()[:total])


def decode_accumulate(
    messages: Sequence[bytes],
    sizes: Sequence[int],
    out: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Decode P messages and return g_hat; twin of :func:`vgc_ref.aggregate.decode_accumulate`.

    Decoding and validation are the reference decoder's, on the host; each rank's words
    are then added on the device, one launch per rank in rank order, and divided by P.
    """
    packet_lists = decode_messages(messages)
    n_ranks = len(packet_lists)
    sizes, segments = rank_ordered_segments(packet_lists, sizes, out)
    result = []
    for j, (n, packets) in enumerate(zip(sizes, segments)):
        d_acc = cuda.to_device(np.zeros(n, np.float32))
        for p in packets:  # rank order: one launch after another
            if p.count:
                d_words = cuda.to_device(np.ascontiguousarray(p.words))
                _add_words_kernel[_blocks(p.count), TPB](d_acc, d_words, int(p.codec), int(p.param))
        if n:
            _divide_kernel[_blocks(n), TPB](d_acc, np.float32(n_ranks))
        g_hat = d_acc.copy_to_host()
        if out is None:
            result.append(g_hat)
        else:
            out[j][...] = g_hat
            result.append(out[j])
    return result


def dense_grad_var(x: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """g_W, s_W, g_b, s_b of a dense layer; twin of :func:`vgc_ref.variance.dense_grad_var`.

    One fused tiled kernel computes x^T D and (x*x)^T (D*D) from the same tiles. The sums
    run in batch order without FMA, so they can differ from BLAS in the last bits.
    """
    _check_pair(x, delta)
    n_in = x.shape[1]
    n_out = delta.shape[1]
    d_x = cuda.to_device(np.ascontiguousarray(x))
    d_d = cuda.to_device(np.ascontiguousarray(delta))
    d_gw = cuda.device_array((n_in, n_out), np.float32)
    d_sw = cuda.device_array((n_in, n_out), np.float32)
    d_gb = cuda.device_array(n_out, np.float32)
    d_sb = cuda.device_array(n_out, np.float32)
    if n_in and n_out:
        grid = (math.ceil(n_out / TILE), math.ceil(n_in / TILE))
        _dense_grad_var_kernel[grid, (TILE, TILE)](d_x, d_d, d_gw, d_sw)
    if n_out:
        _bias_grad_var_kernel[_blocks(n_out), TPB](d_d, d_gb, d_sb)
    return d_gw.copy_to_host(), d_sw.copy_to_host(), d_gb.copy_to_host(), d_sb.copy_to_host()


BACKEND = Backend(
    name="numba-cuda",
    vgc_step=vgc_step,
    strom_step=strom_step,
    check_step=check_step,
    decode_accumulate=decode_accumulate,
    dense_grad_var=dense_grad_var,
)
