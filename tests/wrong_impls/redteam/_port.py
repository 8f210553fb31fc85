"""A from-the-docs port of the vgc_ref adapter protocol, in plain NumPy.

Written from docs/algorithm.md, docs/format.md and docs/conformance.md ("The adapter
protocol") only. Every rule lives in a small module-level helper so that a wrong
implementation can be made by replacing exactly one helper in a fresh copy of this
module (see /work/redteam/wrong/_base.py).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

import vgc_ref
from vgc_ref.errors import (
    AccumulatorOverflowError,
    FormatError,
    InputError,
    NegativeVarianceError,
    NonFiniteError,
    SegmentMismatchError,
)

F32 = np.float32
U32 = np.uint32
MAX_N = 1 << 27
MAX_ID = (1 << 32) - 1
SQRT2_MANT = 0x3504F3
MAGIC = b"VGCM"
VERSION = 1
HDR = 12
SEG_HDR = 20
DENSE, VGC_Q4, STROM = 0, 1, 2


# --------------------------------------------------------------------------------------
# float32 primitives (algorithm.md: every op rounded on its own, no FMA, no FTZ)
# --------------------------------------------------------------------------------------


def f_add(a, b):
    with np.errstate(all="ignore"):
        return np.add(a, b, dtype=F32)


def f_sub(a, b):
    with np.errstate(all="ignore"):
        return np.subtract(a, b, dtype=F32)


def f_mul(a, b):
    with np.errstate(all="ignore"):
        return np.multiply(a, b, dtype=F32)


def f_div(a, b):
    with np.errstate(all="ignore"):
        return np.divide(a, b, dtype=F32)


def f_muladd(acc, a, b):
    """acc (+) (a (x) b): two roundings (no FMA)."""
    return f_add(acc, f_mul(a, b))


def zeros32(shape):
    return np.zeros(shape, F32)  # +0.0


# --------------------------------------------------------------------------------------
# validation of step inputs (algorithm.md section 3 step 0; conformance.md error table)
# --------------------------------------------------------------------------------------


def check_vec(name, x, n):
    if not isinstance(x, np.ndarray):
        raise InputError(name, type(x).__name__, "must be a numpy.ndarray")
    if x.dtype != F32:
        raise InputError(name, f"dtype {x.dtype}", "must have dtype float32")
    if x.ndim != 1:
        raise InputError(name, f"shape {x.shape}", "must be 1-D")
    if x.shape[0] != n:
        raise InputError(name, f"length {x.shape[0]}", f"must have length {n}")
    return x


def first_bad(mask):
    return int(np.argmax(mask))


def check_finite(name, x, seg):
    bad = ~np.isfinite(x)
    if bad.any():
        i = first_bad(bad)
        raise NonFiniteError(name, seg, i, float(x[i]))


def check_nonneg(x, seg):
    bad = x < 0
    if bad.any():
        i = first_bad(bad)
        raise NegativeVarianceError(seg, i, float(x[i]))


def check_sum(name, a, b, seg):
    s = f_add(a, b)
    bad = ~np.isfinite(s)
    if bad.any():
        i = first_bad(bad)
        raise AccumulatorOverflowError(name, seg, i, float(a[i]))
    return s


def accumulate(state, g, s=None):
    """Validate and return (r + g, v + s) as new arrays; the state is not written."""
    n = state.n
    seg = state.segment_id
    check_vec("g", g, n)
    check_finite("g", g, seg)
    if s is not None:
        check_vec("s", s, n)
        check_finite("s", s, seg)
        check_nonneg(s, seg)
    r_new = check_sum("r + g", state.r, g, seg)
    v_new = None
    if s is not None:
        v_new = check_sum("v + s", state.v, s, seg)
    return r_new, v_new


def store(dst, src):
    """Write a new value into a state array in place."""
    dst[...] = src


# --------------------------------------------------------------------------------------
# VGC step (algorithm.md section 3)
# --------------------------------------------------------------------------------------


def f32_bits(x):
    return np.ascontiguousarray(x, dtype=F32).view(U32)


def criterion(r, v, alpha32, tau32):
    rr = f_mul(r, r)
    av = f_mul(alpha32, v)
    cand = rr > av
    return cand & (np.abs(r) >= tau32)


def round_exponent(r):
    """(sendable, e) for x = |r|: ef == 0 not sendable; e = ef + (mf >= 0x3504F3), <= 254."""
    bits = f32_bits(r) & U32(0x7FFFFFFF)
    ef = (bits >> U32(23)).astype(np.int64)
    mf = bits & U32(0x7FFFFF)
    e = ef + (mf >= SQRT2_MANT).astype(np.int64)
    e = np.minimum(e, 254)
    return ef != 0, e


def exponent_base(mask, e):
    return int(e[mask].max()) if mask.any() else 0


def k_sendable(k):
    return k <= 15


def sign_bits(r):
    return (f32_bits(r) >> U32(31)).astype(U32)


def quantized_values(sign, e):
    return ((sign.astype(U32) << U32(31)) | (e.astype(U32) << U32(23))).view(F32)


def vgc_words(idx, sign, k):
    return (idx.astype(U32) << U32(5)) | (sign.astype(U32) << U32(4)) | k.astype(U32)


def feedback(r, q):
    return f_sub(r, q)


def decay(zeta32, v):
    return f_mul(zeta32, v)


def vgc_step(state, g, s, params):
    r, v = accumulate(state, g, s)
    cand = criterion(r, v, params.alpha32, params.tau32)
    sendable, e = round_exponent(r)
    cand = cand & sendable
    E = exponent_base(cand, e)
    k = E - e
    send = cand & k_sendable(k)
    idx = np.nonzero(send)[0]
    sign = sign_bits(r[idx])
    q = quantized_values(sign, e[idx])
    r_out = r.copy()
    if params.residual == "reset":
        r_out[idx] = F32(0.0)
    else:
        r_out[idx] = feedback(r[idx], q)
    v_out = decay(params.zeta32, v)
    v_out[idx] = F32(0.0)
    words = vgc_words(idx, sign, k[idx])
    store(state.r, r_out)
    store(state.v, v_out)
    return vgc_ref.Packet(state.segment_id, state.n, vgc_ref.Codec.VGC_Q4, E if idx.size else 0, words)


# --------------------------------------------------------------------------------------
# Strom step (algorithm.md section 4)
# --------------------------------------------------------------------------------------


def strom_select(r, params):
    return np.abs(r) >= F32(params.tau32)


def strom_words(idx, sign):
    return (idx.astype(U32) << U32(1)) | sign.astype(U32)


def strom_step(state, g, params):
    r, _ = accumulate(state, g, None)
    tau32 = F32(params.tau32)
    send = strom_select(r, params)
    idx = np.nonzero(send)[0]
    sign = sign_bits(r[idx])
    tbits = int(np.array(tau32, F32).view(U32))
    q = ((sign.astype(U32) << U32(31)) | U32(tbits)).view(F32)
    r_out = r.copy()
    r_out[idx] = f_sub(r[idx], q)
    store(state.r, r_out)
    return vgc_ref.Packet(state.segment_id, state.n, vgc_ref.Codec.STROM, tbits, strom_words(idx, sign))


# --------------------------------------------------------------------------------------
# packet content rules (format.md checks 9, 13-19), shared by encoder and decoder
# --------------------------------------------------------------------------------------


def content_error(n, codec, param, words):
    """First content-rule violation as (field, word_number or None, reason), else None."""
    count = len(words)
    if n > MAX_N:
        return ("n", None, "n > 2^27")
    if codec not in (DENSE, VGC_Q4, STROM):
        return ("codec", None, "unknown codec")
    # (reserved bytes: decoder only)
    return None


def param_error(n, codec, param, count):
    if codec == VGC_Q4:
        if param >> 8:
            return "reserved bits of param not 0"
        E = param & 0xFF
        if E == 255:
            return "E = 255"
        if E == 0 and count > 0:
            return "E = 0 with words"
        if E > 0 and count == 0:
            return "E > 0 without words"
        return None
    if codec == STROM:
        tau = np.array(param, U32).view(F32)
        if not (np.isfinite(tau) and tau > 0):
            return "tau not finite and > 0"
        return None
    if param != 0:
        return "DENSE param not 0"
    return None


def count_error(n, codec, count):
    if codec == DENSE:
        return count != n
    return count > n


def word_index(codec, words):
    if codec == VGC_Q4:
        return (words >> U32(5)).astype(np.int64)
    return (words >> U32(1)).astype(np.int64)


def words_error(n, codec, param, words):
    """(field, word_number, reason) of checks 15-19, or None."""
    words = np.asarray(words, U32)
    if codec in (VGC_Q4, STROM):
        idx = word_index(codec, words)
        bad = idx >= n
        if bad.any():
            return ("words", first_bad(bad), "index >= n")
        if idx.size > 1:
            bad = idx[1:] <= idx[:-1]
            if bad.any():
                return ("words", first_bad(bad) + 1, "indices not strictly increasing")
        if codec == VGC_Q4:
            E = param & 0xFF
            k = (words & U32(0xF)).astype(np.int64)
            bad = k >= E
            if bad.any():
                return ("words", first_bad(bad), "k >= E")
            if words.size and not (k == 0).any():
                return ("param", None, "no word with k = 0")
        return None
    exp = (words >> U32(23)) & U32(0xFF)
    bad = exp == 0xFF
    if bad.any():
        return ("words", first_bad(bad), "inf or NaN")
    return None


# --------------------------------------------------------------------------------------
# encoder (format.md)
# --------------------------------------------------------------------------------------


def _is_int(x):
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def validate_packet(i, p, seen):
    name = f"packets[{i}]"
    if not isinstance(p, vgc_ref.Packet):
        raise InputError(name, type(p).__name__, "expected a vgc_ref.packet.Packet")
    sid, n, codec, param, words = p.segment_id, p.n, p.codec, p.param, p.words
    if not _is_int(sid) or not 0 <= sid <= MAX_ID:
        raise InputError(f"{name}.segment_id", sid, "must be a u32")
    if not _is_int(n) or not 0 <= n <= MAX_N:
        raise InputError(f"{name}.n", n, "must be in 0 .. 2^27")
    if not _is_int(codec) or int(codec) not in (DENSE, VGC_Q4, STROM):
        raise InputError(f"{name}.codec", codec, "unknown codec")
    if not _is_int(param) or not 0 <= param <= MAX_ID:
        raise InputError(f"{name}.param", param, "must be a u32")
    if not isinstance(words, np.ndarray) or words.dtype != U32 or words.ndim != 1:
        raise InputError(f"{name}.words", getattr(words, "dtype", type(words).__name__), "must be 1-D uint32")
    if int(sid) in seen:
        raise InputError(f"{name}.segment_id", sid, "repeated segment id")
    codec, param, n = int(codec), int(param), int(n)
    pe = param_error(n, codec, param, words.size)
    if pe:
        raise InputError(f"{name}.param", param, pe)
    if count_error(n, codec, words.size):
        raise InputError(f"{name}.count", words.size, "count does not fit n")
    we = words_error(n, codec, param, words)
    if we:
        field, j, reason = we
        if j is None:
            raise InputError(f"{name}.{field}", param, reason)
        raise InputError(f"{name}.words[{j}]", int(words[j]), reason)
    seen.add(int(sid))
    return int(sid), n, codec, param, words


def crc32(data):
    return zlib.crc32(data) & 0xFFFFFFFF


def pack_crc(c):
    return struct.pack("<I", c)


def read_crc(buf):
    return u32(buf, len(buf) - 4)


def pack_header(S):
    return MAGIC + struct.pack("<HHI", VERSION, 0, S)


def pack_segment(sid, n, codec, param, words):
    return (
        struct.pack("<IIB3sII", sid, n, codec, b"\0\0\0", param, len(words)) + words.astype("<u4").tobytes()
    )


def order_packets(packets):
    return list(packets)


def encode_message(packets):
    if isinstance(packets, (str, bytes, bytearray, memoryview)) or not hasattr(packets, "__iter__"):
        raise InputError("packets", type(packets).__name__, "expected a sequence of Packet")
    packets = order_packets(packets)
    seen = set()
    checked = [validate_packet(i, p, seen) for i, p in enumerate(packets)]
    body = bytearray(pack_header(len(checked)))
    for sid, n, codec, param, words in checked:
        body += pack_segment(sid, n, codec, param, words)
    body += pack_crc(crc32(bytes(body)))
    return bytes(body)


# --------------------------------------------------------------------------------------
# decoder (format.md, "What a decoder rejects")
# --------------------------------------------------------------------------------------


def as_bytes(data):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError("data", type(data).__name__, "must be bytes, bytearray or memoryview")
    if isinstance(data, memoryview):
        return data.tobytes()
    return bytes(data)


def u32(buf, off):
    return struct.unpack_from("<I", buf, off)[0]


def u16(buf, off):
    return struct.unpack_from("<H", buf, off)[0]


def fits(off, width, limit):
    return off + width <= limit


def frame(buf):
    """Checks 1-7: return the list of (segment offset, id, n, codec, reserved, param, count, words offset)."""
    L = len(buf)
    lim = L - 4
    if not fits(0, 4, lim):
        raise FormatError("magic", 0, "truncated")
    if buf[0:4] != MAGIC:
        raise FormatError("magic", 0, "bad magic")
    if not fits(4, 2, lim):
        raise FormatError("version", 4, "truncated")
    if u16(buf, 4) != VERSION:
        raise FormatError("version", 4, "bad version")
    if not fits(6, 2, lim):
        raise FormatError("reserved", 6, "truncated")
    if u16(buf, 6) != 0:
        raise FormatError("reserved", 6, "reserved not 0")
    if not fits(8, 4, lim):
        raise FormatError("segment_count", 8, "truncated")
    S = u32(buf, 8)
    off = HDR
    segs = []
    fields = (
        ("segment_id", 0, 4),
        ("n", 4, 4),
        ("codec", 8, 1),
        ("reserved", 9, 3),
        ("param", 12, 4),
        ("count", 16, 4),
    )
    for _ in range(S):
        for fname, fo, w in fields:
            if not fits(off + fo, w, lim):
                raise FormatError(fname, off + fo, "truncated")
        sid = u32(buf, off)
        n = u32(buf, off + 4)
        codec = buf[off + 8]
        res = buf[off + 9 : off + 12]
        param = u32(buf, off + 12)
        count = u32(buf, off + 16)
        woff = off + SEG_HDR
        if not fits(woff, 4 * count, lim):
            raise FormatError("words", woff, "truncated")
        segs.append((off, sid, n, codec, res, param, count, woff))
        off = woff + 4 * count
    if L - off > 4:
        raise FormatError("crc32", off, "trailing bytes")
    return segs


def check_crc(buf):
    L = len(buf)
    if crc32(buf[: L - 4]) != read_crc(buf):
        raise FormatError("crc32", L - 4, "CRC mismatch")


def check_segment(buf, seg, seen):
    off, sid, n, codec, res, param, count, woff = seg
    if n > MAX_N:
        raise FormatError("n", off + 4, "n > 2^27")
    if codec not in (DENSE, VGC_Q4, STROM):
        raise FormatError("codec", off + 8, "unknown codec")
    if res != b"\0\0\0":
        raise FormatError("reserved", off + 9, "reserved not 0")
    if sid in seen:
        raise FormatError("segment_id", off, "duplicate segment id")
    seen.add(sid)
    if param_error(n, codec, param, count):
        raise FormatError("param", off + 12, param_error(n, codec, param, count))
    if count_error(n, codec, count):
        raise FormatError("count", off + 16, "count does not fit n")
    words = np.frombuffer(buf, dtype="<u4", count=count, offset=woff).astype(U32)
    we = words_error(n, codec, param, words)
    if we:
        field, j, reason = we
        raise FormatError(field, off + 12 if j is None else woff + 4 * j, reason)
    return vgc_ref.Packet(sid, n, vgc_ref.Codec(codec), param, words)


def decode_message(data):
    buf = as_bytes(data)
    segs = frame(buf)
    check_crc(buf)
    seen = set()
    return [check_segment(buf, seg, seen) for seg in segs]


# --------------------------------------------------------------------------------------
# aggregation (algorithm.md section 7)
# --------------------------------------------------------------------------------------


def packet_values(p):
    """(indices, float32 values) of a valid packet."""
    w = p.words
    if p.codec == DENSE:
        return np.arange(p.n), w.view(F32)
    if p.codec == VGC_Q4:
        idx = (w >> U32(5)).astype(np.int64)
        sign = (w >> U32(4)) & U32(1)
        k = (w & U32(0xF)).astype(np.int64)
        e = int(p.param) - k
        return idx, quantized_values(sign, e)
    idx = (w >> U32(1)).astype(np.int64)
    sign = w & U32(1)
    return idx, ((sign << U32(31)) | U32(p.param)).view(F32)


def check_layout(packets, sizes):
    S = len(sizes)
    by_id = {}
    for p in packets:
        if p.segment_id >= S:
            raise SegmentMismatchError(f"unknown segment id {p.segment_id}")
        if p.n != sizes[p.segment_id]:
            raise SegmentMismatchError(f"segment {p.segment_id}: n = {p.n}, expected {sizes[p.segment_id]}")
        by_id[p.segment_id] = p
    if len(by_id) != S:
        missing = sorted(set(range(S)) - set(by_id))
        raise SegmentMismatchError(f"missing segment(s) {missing}")
    return [by_id[j] for j in range(S)]


def check_sizes(sizes):
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        raise InputError("sizes", type(sizes).__name__, "must be a sequence of int")
    out = []
    for j, n in enumerate(sizes):
        if not _is_int(n) or not 0 <= n <= MAX_N:
            raise InputError(f"sizes[{j}]", n, "must be an int in 0 .. 2^27")
        out.append(int(n))
    return out


def check_out(out, sizes):
    if out is None:
        return None
    if isinstance(out, np.ndarray) or not hasattr(out, "__len__") or len(out) != len(sizes):
        raise InputError("out", type(out).__name__, "must be a list with one array per segment")
    for j, (a, n) in enumerate(zip(out, sizes)):
        if not isinstance(a, np.ndarray) or a.dtype != F32 or a.ndim != 1 or a.shape[0] != n:
            raise InputError(f"out[{j}]", getattr(a, "shape", type(a).__name__), "must be float32[n]")
        if not a.flags.writeable:
            raise InputError(f"out[{j}]", "read-only", "must be writeable")
    return out


def decode_rank(w, m):
    try:
        return decode_message(m)
    except FormatError as err:
        err.rank = w
        raise


def rank_order(packs):
    return list(range(len(packs)))


def divide(acc, P):
    return f_div(acc, F32(P))


def decode_accumulate(messages, sizes, out=None):
    if isinstance(messages, (str, bytes, bytearray, memoryview)) or not hasattr(messages, "__len__"):
        raise InputError("messages", type(messages).__name__, "must be a sequence of messages")
    if len(messages) == 0:
        raise InputError("messages", "[]", "no messages")
    sizes = check_sizes(sizes)
    out = check_out(out, sizes)
    decoded = [decode_rank(w, m) for w, m in enumerate(messages)]
    packs = [check_layout(d, sizes) for d in decoded]
    res = reduce_ranks(packs, sizes)
    return write_out(out, res)


def reduce_ranks(packs, sizes):
    P = len(packs)
    accs = [zeros32(n) for n in sizes]
    for w in rank_order(packs):
        for j, p in enumerate(packs[w]):
            idx, val = packet_values(p)
            accs[j][idx] = f_add(accs[j][idx], val)
    return [divide(a, P) for a in accs]


def write_out(out, res):
    if out is None:
        return res
    for a, r in zip(out, res):
        a[...] = r
    return list(out)


# --------------------------------------------------------------------------------------
# variance of dense and convolution layers (algorithm.md sections 2 and 2.1)
# --------------------------------------------------------------------------------------


def check_mat(name, a, ndim):
    if not isinstance(a, np.ndarray):
        raise InputError(name, type(a).__name__, "must be a numpy.ndarray")
    if a.dtype != F32:
        raise InputError(name, f"dtype {a.dtype}", "must have dtype float32")
    if a.ndim != ndim:
        raise InputError(name, f"shape {a.shape}", f"must be {ndim}-D")
    return a


def square(a):
    return f_mul(a, a)


def matmul_tn(A, Bm):
    """A: (m, K), Bm: (m, n) -> A^T Bm, summed over rows in increasing order from +0.0."""
    acc = zeros32((A.shape[1], Bm.shape[1]))
    for b in range(A.shape[0]):
        acc = f_add(acc, f_mul(A[b][:, None], Bm[b][None, :]))
    return acc


def column_sums(A):
    acc = zeros32(A.shape[1:])
    for b in range(A.shape[0]):
        acc = f_add(acc, A[b])
    return acc


def sum_of_squares(G):
    """((+0.0 (+) G_0 (x) G_0) (+) G_1 (x) G_1) ... over the first axis."""
    acc = zeros32(G.shape[1:])
    for b in range(G.shape[0]):
        acc = f_add(acc, f_mul(G[b], G[b]))
    return acc


def dense_grad_var(x, delta):
    x = check_mat("x", x, 2)
    delta = check_mat("delta", delta, 2)
    if x.shape[0] == 0:
        raise InputError("x", f"shape {x.shape}", "needs at least one sample")
    if x.shape[0] != delta.shape[0]:
        raise InputError("delta", f"shape {delta.shape}", "batch differs from x")
    gW = matmul_tn(x, delta)
    sW = matmul_tn(square(x), square(delta))
    gb = column_sums(delta)
    sb = column_sums(square(delta))
    return gW, sW, gb, sb


def conv_grad_var(patches, delta, form="exact"):
    X = check_mat("patches", patches, 3)
    D = check_mat("delta", delta, 3)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError("patches", f"shape {X.shape}", "needs at least one sample and position")
    if X.shape[:2] != D.shape[:2]:
        raise InputError("delta", f"shape {D.shape}", "(B, P) differs from patches")
    check_form(form)
    Xf = flatten_rows(X)
    Df = flatten_rows(D)
    gW = matmul_tn(Xf, Df)
    gb = column_sums(Df)
    if form == "exact":
        sW = exact_sW(X, D)
        sb = exact_sb(D)
    else:
        sW = approx_sW(Xf, Df)
        sb = column_sums(square(Df))
    return gW, sW, gb, sb


def check_form(form):
    if form not in ("exact", "approx"):
        raise InputError("form", form, "must be 'exact' or 'approx'")


def flatten_rows(A):
    """(B, P, C) -> (B*P, C), rows b-major then p."""
    return A.reshape(A.shape[0] * A.shape[1], A.shape[2])


def exact_sW(X, D):
    G = np.stack([matmul_tn(X[b], D[b]) for b in range(X.shape[0])])
    return sum_of_squares(G)


def exact_sb(D):
    e = np.stack([column_sums(D[b]) for b in range(D.shape[0])])
    return sum_of_squares(e)


def approx_sW(Xf, Df):
    return matmul_tn(square(Xf), square(Df))
