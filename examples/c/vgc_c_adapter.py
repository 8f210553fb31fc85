"""ctypes adapter: the C port (libvgc.so) behind the adapter protocol of docs/conformance.md.

    make -C examples/c                       # builds examples/c/build/libvgc.so
    PYTHONPATH=examples/c python -m vgc_ref.conformance --impl vgc_c_adapter

Every operation runs in C: the six functions below only check the Python-level types
the C code cannot see (ndarray, dtype, shape, list, bytes), marshal the arrays, call the
library, and turn its error codes into the vgc_ref.errors classes with the attributes
the protocol requires. Nothing falls back to the reference implementation: from
vgc_ref this module takes only the data types (Packet, Codec) and the exception classes.

The library is found at $VGC_C_LIB, else at build/libvgc.so next to this file.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

from vgc_ref import Codec, Packet
from vgc_ref.errors import (
    AccumulatorOverflowError,
    FormatError,
    InputError,
    NegativeVarianceError,
    NonFiniteError,
    SegmentMismatchError,
)

_LIB_PATH = os.environ.get("VGC_C_LIB") or str(Path(__file__).resolve().parent / "build" / "libvgc.so")
lib = ctypes.CDLL(_LIB_PATH)

MAX_SEGMENT_LEN = 1 << 27
MAX_U32 = (1 << 32) - 1

# status codes of vgc.h
OK, NONFINITE, NEGATIVE, OVERFLOW, FORMAT, MISMATCH, INPUT, NOMEM = range(8)


class VgcError(ctypes.Structure):
    _fields_ = [
        ("status", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("index", ctypes.c_uint64),
        ("value", ctypes.c_float),
        ("reason", ctypes.c_char_p),
        ("rank", ctypes.c_int64),
        ("packet", ctypes.c_int64),
        ("word", ctypes.c_int64),
        ("detail", ctypes.c_uint64),
    ]


class VgcPacket(ctypes.Structure):
    _fields_ = [
        ("segment_id", ctypes.c_uint32),
        ("n", ctypes.c_uint32),
        ("codec", ctypes.c_uint32),
        ("param", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        ("words", ctypes.POINTER(ctypes.c_uint32)),
    ]


_F = ctypes.POINTER(ctypes.c_float)
_U = ctypes.POINTER(ctypes.c_uint32)
_SZ = ctypes.c_size_t
_ERR = ctypes.POINTER(VgcError)

lib.vgc_first_nonfinite.argtypes = [_F, _SZ]
lib.vgc_first_nonfinite.restype = _SZ
lib.vgc_step.argtypes = [
    _F,
    _F,
    _F,
    _F,
    _SZ,
    ctypes.c_float,
    ctypes.c_float,
    ctypes.c_float,
    ctypes.c_int,
    _U,
    ctypes.POINTER(_SZ),
    _U,
    _ERR,
]
lib.vgc_strom_step.argtypes = [_F, _F, _SZ, ctypes.c_float, _U, ctypes.POINTER(_SZ), _ERR]
lib.vgc_message_length.argtypes = [ctypes.POINTER(VgcPacket), _SZ]
lib.vgc_message_length.restype = _SZ
lib.vgc_check_packets.argtypes = [ctypes.POINTER(VgcPacket), _SZ, _ERR]
lib.vgc_encode_message.argtypes = [ctypes.POINTER(VgcPacket), _SZ, ctypes.c_char_p, _ERR]
lib.vgc_decode_message.argtypes = [
    ctypes.c_char_p,
    _SZ,
    ctypes.POINTER(VgcPacket),
    _U,
    ctypes.POINTER(_SZ),
    _ERR,
]
lib.vgc_decode_accumulate.argtypes = [
    ctypes.POINTER(ctypes.c_char_p),
    ctypes.POINTER(_SZ),
    _SZ,
    _U,
    _SZ,
    ctypes.POINTER(_F),
    _ERR,
]
lib.vgc_dense_grad_var.argtypes = [_F, _F, _SZ, _SZ, _SZ, _F, _F, _F, _F]
lib.vgc_dense_grad_var.restype = None
lib.vgc_conv_grad_var.argtypes = [_F, _F, _SZ, _SZ, _SZ, _SZ, ctypes.c_int, _F, _F, _F, _F]
lib.vgc_im2col1d.argtypes = [_F, _SZ, _SZ, _SZ, _SZ, _SZ, _SZ, _F]
lib.vgc_im2col1d.restype = None
lib.vgc_im2col2d.argtypes = [_F, _SZ, _SZ, _SZ, _SZ, _SZ, _SZ, _SZ, _SZ, _F]
lib.vgc_im2col2d.restype = None
lib.vgc_conv_out_len.argtypes = [_SZ, _SZ, _SZ, _SZ]
lib.vgc_conv_out_len.restype = _SZ


def _fp(a: np.ndarray):
    return a.ctypes.data_as(_F)


def _up(a: np.ndarray):
    return a.ctypes.data_as(_U)


def _s(b: bytes | None) -> str:
    return b.decode() if b else ""


# ------------------------------------------------------------------------------------
# Python-level type checks (the C code sees only pointers and lengths)


def _check_vector(name: str, x: object, n: int | None = None) -> np.ndarray:
    """A 1-D float32 ndarray of length n (conformance.md: InputError with `name`)."""
    if not isinstance(x, np.ndarray):
        raise InputError(name, type(x).__name__, "must be a numpy.ndarray")
    if x.dtype != np.float32:
        raise InputError(name, f"dtype {x.dtype}", "must have dtype float32")
    if x.ndim != 1:
        raise InputError(name, f"shape {x.shape}", "must be 1-D")
    if n is not None and x.shape[0] != n:
        raise InputError(name, f"length {x.shape[0]}", f"must have length n = {n}")
    if x.shape[0] > MAX_SEGMENT_LEN:
        raise InputError(name, f"length {x.shape[0]}", "a segment holds at most 2^27 elements")
    return x


def _step_error(err: VgcError, segment: int):
    name = _s(err.name)
    if err.status == NONFINITE:
        return NonFiniteError(name, segment, int(err.index), float(err.value))
    if err.status == NEGATIVE:
        return NegativeVarianceError(segment, int(err.index), float(err.value))
    if err.status == OVERFLOW:
        return AccumulatorOverflowError(name, segment, int(err.index), float(err.value))
    return MemoryError(f"libvgc: status {err.status}")


class _InOut:
    """A C-contiguous working copy of a state array when the state is not contiguous."""

    def __init__(self, a: np.ndarray):
        self.a = a
        self.work = a if a.flags.c_contiguous else np.ascontiguousarray(a)

    def commit(self) -> None:
        if self.work is not self.a:
            self.a[...] = self.work


# ------------------------------------------------------------------------------------
# the six operations


def vgc_step(state, g, s, params) -> Packet:
    """algorithm.md section 3, in C (vgc_step.c)."""
    n = state.n
    g = _check_vector("g", g, n)
    g_c = np.ascontiguousarray(g)
    try:
        s = _check_vector("s", s, n)
    except InputError:
        # the documented order is g's type, g finite, s's type, ...
        i = lib.vgc_first_nonfinite(_fp(g_c), n)
        if i < n:
            raise NonFiniteError("g", state.segment_id, int(i), float(g_c[i])) from None
        raise
    s_c = np.ascontiguousarray(s)
    r, v = _InOut(state.r), _InOut(state.v)
    words = np.empty(max(n, 1), np.uint32)
    count, E, err = _SZ(), ctypes.c_uint32(), VgcError()
    rc = lib.vgc_step(
        _fp(r.work),
        _fp(v.work),
        _fp(g_c),
        _fp(s_c),
        n,
        float(params.alpha32),
        float(params.zeta32),
        float(params.tau32),
        int(params.residual == "reset"),
        _up(words),
        ctypes.byref(count),
        ctypes.byref(E),
        ctypes.byref(err),
    )
    if rc:
        raise _step_error(err, state.segment_id)
    r.commit()
    v.commit()
    return Packet(state.segment_id, n, Codec.VGC_Q4, int(E.value), words[: count.value].copy())


def strom_step(state, g, params) -> Packet:
    """algorithm.md section 4, in C (vgc_step.c). v is never read or written."""
    n = state.n
    g_c = np.ascontiguousarray(_check_vector("g", g, n))
    r = _InOut(state.r)
    words = np.empty(max(n, 1), np.uint32)
    count, err = _SZ(), VgcError()
    tau = np.float32(params.tau32)
    rc = lib.vgc_strom_step(
        _fp(r.work), _fp(g_c), n, float(tau), _up(words), ctypes.byref(count), ctypes.byref(err)
    )
    if rc:
        raise _step_error(err, state.segment_id)
    r.commit()
    return Packet(state.segment_id, n, Codec.STROM, int(tau.view(np.uint32)), words[: count.value].copy())


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _encode_error(err: VgcError) -> InputError:
    name = f"packets[{err.packet}].{_s(err.name)}"
    if err.word >= 0:
        name += f"[{err.word}]"
    return InputError(name, "invalid packet", _s(err.reason))


def encode_message(packets) -> bytes:
    """format.md, in C (vgc_codec.c): the content rules and the bytes.

    Packets are checked one by one in list order, each completely (its Python-level
    fields, then the content rules in C) before the next: a content error in packet 0
    wins over a field out of range in packet 1, as in the reference (found by running
    it; the docs do not say).
    """
    if not isinstance(packets, (list, tuple)):
        raise InputError("packets", type(packets).__name__, "must be a list of Packet")
    S = len(packets)
    arr = (VgcPacket * max(S, 1))()
    keep = []

    def earlier_packets_first(j: int) -> None:
        err = VgcError()
        if lib.vgc_check_packets(arr, j, ctypes.byref(err)) == INPUT:
            raise _encode_error(err)

    for j, p in enumerate(packets):
        where = f"packets[{j}]"
        if not isinstance(p, Packet):
            earlier_packets_first(j)
            raise InputError(where, type(p).__name__, "must be a vgc_ref.Packet")
        # fields out of the range of their u32 wire fields
        for field in ("segment_id", "n", "param"):
            value = getattr(p, field)
            if not _is_int(value) or not 0 <= value <= MAX_U32:
                earlier_packets_first(j)
                raise InputError(f"{where}.{field}", repr(value), "must be an integer in 0 .. 2^32 - 1")
        words = p.words
        if not isinstance(words, np.ndarray) or words.dtype != np.uint32 or words.ndim != 1:
            earlier_packets_first(j)
            raise InputError(
                f"{where}.words", repr(getattr(words, "dtype", type(words))), "must be 1-D uint32"
            )
        words = np.ascontiguousarray(words)
        keep.append(words)
        arr[j].segment_id = int(p.segment_id)
        arr[j].n = int(p.n)
        arr[j].codec = int(p.codec)
        arr[j].param = int(p.param)
        arr[j].count = int(words.shape[0])
        arr[j].words = _up(words)
    length = lib.vgc_message_length(arr, S)
    out = ctypes.create_string_buffer(length)
    err = VgcError()
    rc = lib.vgc_encode_message(arr, S, out, ctypes.byref(err))
    if rc == INPUT:
        raise _encode_error(err)
    if rc:
        raise MemoryError(f"libvgc: status {rc}")
    return out.raw[:length]


def _check_sizes(sizes) -> list:
    """docs/conformance.md: a sequence of integers (not bool, not float) in 0 .. 2^27."""
    if isinstance(sizes, (str, bytes, bytearray)) or not hasattr(sizes, "__iter__"):
        raise InputError("sizes", type(sizes).__name__, "must be a sequence of segment lengths")
    out = []
    for j, n in enumerate(sizes):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise InputError(f"sizes[{j}]", repr(n), "must be an integer")
        if not 0 <= n <= 1 << 27:
            raise InputError(f"sizes[{j}]", repr(n), "must be in 0 .. 2^27")
        out.append(int(n))
    return out


def _as_bytes(name: str, data) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(name, type(data).__name__, "must be bytes, bytearray or memoryview")
    return bytes(data)  # a copy: the caller's buffer is never touched


def _format_error(err: VgcError) -> FormatError:
    return FormatError(_s(err.name), int(err.index), _s(err.reason))


def _decode_in_c(buf: bytes, rank: int | None = None) -> list:
    L = len(buf)
    packets = (VgcPacket * (L // 20 + 1))()
    words = np.empty(L // 4 + 1, np.uint32)
    S, err = _SZ(), VgcError()
    rc = lib.vgc_decode_message(buf, L, packets, _up(words), ctypes.byref(S), ctypes.byref(err))
    if rc == FORMAT:
        e = _format_error(err)
        if rank is not None:
            e.rank = rank
        raise e
    if rc:
        raise MemoryError(f"libvgc: status {rc}")
    out, start = [], 0
    for j in range(S.value):
        p = packets[j]
        out.append(
            Packet(
                int(p.segment_id),
                int(p.n),
                Codec(int(p.codec)),
                int(p.param),
                words[start : start + p.count].copy(),
            )
        )
        start += p.count
    return out


def decode_message(data) -> list:
    """format.md "What a decoder rejects", in C (vgc_codec.c)."""
    return _decode_in_c(_as_bytes("data", data))


def _accumulate_in_c(bufs: list, sizes: list) -> list:
    """Runs vgc_decode_accumulate on fresh arrays; raises the error of the first bad rank."""
    P, S = len(bufs), len(sizes)
    msg_arr = (ctypes.c_char_p * P)(*bufs)
    len_arr = (_SZ * P)(*[len(b) for b in bufs])
    size_arr = np.asarray(sizes, np.uint32) if S else np.zeros(1, np.uint32)
    acc = [np.zeros(n, np.float32) for n in sizes]
    out_ptrs = (_F * max(S, 1))(*[_fp(a) for a in acc])
    err = VgcError()
    rc = lib.vgc_decode_accumulate(msg_arr, len_arr, P, _up(size_arr), S, out_ptrs, ctypes.byref(err))
    if rc == FORMAT:
        e = _format_error(err)
        e.rank = int(err.rank)
        raise e
    if rc == MISMATCH:
        raise SegmentMismatchError(f"message of rank {err.rank}: {_s(err.reason)} ({err.detail})")
    if rc == INPUT:
        raise InputError(_s(err.name), "", _s(err.reason))
    if rc:
        raise MemoryError(f"libvgc: status {rc}")
    return acc


def decode_accumulate(messages, sizes, out=None) -> list:
    """algorithm.md section 7, in C (vgc_aggregate.c).

    Error order (docs/conformance.md, "Which error wins"): no messages ("messages"); then
    every message decoded in rank order (a non-bytes message is InputError "data", as
    for decode_message; FormatError carries the rank); then sizes ("sizes[j]"); then
    every message's layout in rank order (SegmentMismatchError); only then `out` ("out"
    for the list, "out[j]" for one array).
    """
    if not isinstance(messages, (list, tuple)) or len(messages) == 0:
        raise InputError(
            "messages",
            f"{len(messages) if isinstance(messages, (list, tuple)) else type(messages).__name__}",
            "needs at least one worker's message",
        )
    bufs = []
    for w, m in enumerate(messages):  # every message decoded, in rank order, first
        bufs.append(_as_bytes("data", m))  # copies: the caller's buffers are never touched
        _decode_in_c(bufs[-1], rank=w)
    sizes = _check_sizes(sizes)  # then sizes, then (in C) the layout
    S = len(sizes)
    acc = _accumulate_in_c(bufs, sizes)
    if out is None:
        return acc
    if not isinstance(out, (list, tuple)) or len(out) != S:
        raise InputError("out", type(out).__name__, f"must be a list of {S} float32 arrays")
    for j, o in enumerate(out):
        name = f"out[{j}]"
        if not isinstance(o, np.ndarray):
            raise InputError(name, type(o).__name__, "must be a numpy.ndarray")
        if o.dtype != np.float32:
            raise InputError(name, f"dtype {o.dtype}", "must have dtype float32")
        if o.ndim != 1:
            raise InputError(name, f"shape {o.shape}", "must be 1-D")
        if o.shape[0] != sizes[j]:
            raise InputError(name, f"length {o.shape[0]}", f"must have length n = {sizes[j]}")
        if not o.flags.writeable:
            raise InputError(name, "a read-only array", "must be writeable")
    for o, a in zip(out, acc):
        o[...] = a
    return out


def _check_layer(name: str, a) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise InputError(name, type(a).__name__, "must be a numpy.ndarray")
    if a.dtype != np.float32:
        raise InputError(name, f"dtype {a.dtype}", "must have dtype float32")
    if a.ndim != 2:
        raise InputError(name, f"shape {a.shape}", "must be 2-D (batch, features)")
    return a


def dense_grad_var(x, delta):
    """algorithm.md section 2, in C (vgc_variance.c): (g_W, s_W, g_b, s_b)."""
    x = _check_layer("x", x)
    delta = _check_layer("delta", delta)
    if x.shape[0] != delta.shape[0]:
        raise InputError("delta", f"shape {delta.shape}", f"batch must match x's {x.shape[0]}")
    if x.shape[0] == 0:
        raise InputError("x", f"shape {x.shape}", "the batch must not be empty")
    B, n_in = x.shape
    n_out = delta.shape[1]
    xc, dc = np.ascontiguousarray(x), np.ascontiguousarray(delta)
    g_W = np.empty((n_in, n_out), np.float32)
    s_W = np.empty((n_in, n_out), np.float32)
    g_b = np.empty(n_out, np.float32)
    s_b = np.empty(n_out, np.float32)
    lib.vgc_dense_grad_var(_fp(xc), _fp(dc), B, n_in, n_out, _fp(g_W), _fp(s_W), _fp(g_b), _fp(s_b))
    return g_W, s_W, g_b, s_b


# ------------------------------------------------------------------------------------
# outside the six operations of the adapter protocol: convolution variance (the kit
# tests conv_grad_var when an adapter defines it, which conformance.md does not say)
# and im2col (used by test_conv.py only)


def conv_grad_var(patches, delta, form="exact"):
    """algorithm.md section 2.1: patches float32[B, P, K], delta float32[B, P, out].

    The input errors (names and reasons) are not in the docs; these follow what the
    kit's test_conv_grad_var_rejects_invalid_inputs expects (see README.md).
    """
    for name, a in (("patches", patches), ("delta", delta)):
        if not isinstance(a, np.ndarray):
            raise InputError(name, type(a).__name__, "must be a numpy.ndarray")
        if a.dtype != np.float32:
            raise InputError(name, f"dtype {a.dtype}", "must have dtype float32")
        if a.ndim != 3:
            raise InputError(name, f"shape {a.shape}", "must be 3-D (batch, positions, features)")
    if delta.shape[:2] != patches.shape[:2]:
        raise InputError(
            "delta", f"shape {delta.shape}", f"must match patches' batch and positions {patches.shape[:2]}"
        )
    if patches.shape[0] == 0 or patches.shape[1] == 0:
        raise InputError("patches", f"shape {patches.shape}", "needs at least one sample and one position")
    if form not in ("exact", "approx"):
        raise InputError("form", form, "must be one of exact, approx")
    X = np.ascontiguousarray(patches)
    D = np.ascontiguousarray(delta)
    B, P, K = X.shape
    n_out = D.shape[2]
    g_W = np.empty((K, n_out), np.float32)
    s_W = np.empty((K, n_out), np.float32)
    g_b = np.empty(n_out, np.float32)
    s_b = np.empty(n_out, np.float32)
    rc = lib.vgc_conv_grad_var(
        _fp(X), _fp(D), B, P, K, n_out, int(form == "approx"), _fp(g_W), _fp(s_W), _fp(g_b), _fp(s_b)
    )
    if rc:
        raise MemoryError(f"libvgc: status {rc}")
    return g_W, s_W, g_b, s_b


def im2col1d(x, kernel, stride=1, padding=0):
    """x float32[B, L, C] -> patches float32[B, P, kernel*C] (column k*C + c)."""
    x = np.ascontiguousarray(x, np.float32)
    B, L, C = x.shape
    P = lib.vgc_conv_out_len(L, kernel, stride, padding)
    patches = np.empty((B, P, kernel * C), np.float32)
    lib.vgc_im2col1d(_fp(x), B, L, C, kernel, stride, padding, _fp(patches))
    return patches


def im2col2d(x, kernel, stride=1, padding=0):
    """x float32[B, H, W, C] -> patches float32[B, Ho*Wo, kh*kw*C] (tap ki*kw + kj)."""
    x = np.ascontiguousarray(x, np.float32)
    B, H, W, C = x.shape
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    Ho = lib.vgc_conv_out_len(H, kh, stride, padding)
    Wo = lib.vgc_conv_out_len(W, kw, stride, padding)
    patches = np.empty((B, Ho * Wo, kh * kw * C), np.float32)
    lib.vgc_im2col2d(_fp(x), B, H, W, C, kh, kw, stride, padding, _fp(patches))
    return patches
