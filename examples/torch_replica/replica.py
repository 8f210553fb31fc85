"""An independent PyTorch implementation of the MPI demo's training job.

Written from the documentation alone -- docs/demo.md "Arithmetic of one step" (the portable
primitives, the generator, the data and initial parameters, the step, and the CNN's steps),
its "MNIST-1D" and "CNN" paragraphs, docs/algorithm.md (the dense and convolution variance
terms of sections 2 and 2.1, the VGC, Strom and top-k steps of sections 3-5, the
rank-ordered aggregation), docs/format.md (the message bytes) and docs/trace.md (the
records) -- without importing ``mpi_demo`` or ``vgc_ref`` (MNIST-1D is read from the data
file ``mpi_demo/mnist1d.npz`` with NumPy). It runs the P workers in one process, as
``python -m mpi_demo train --simulate-ranks P`` does, and writes a
trace that ``python -m mpi_demo compare`` checks against the demo's::

    python examples/torch_replica/replica.py --method vgc --ranks 4 --trace replica.jsonl
    python -m mpi_demo train --simulate-ranks 4 --trace demo.jsonl
    python -m mpi_demo compare demo.jsonl replica.jsonl

Every float32 operation below is one PyTorch elementwise operation on float32 tensors, so it
is rounded on its own (eager PyTorch fuses nothing); float32 hyperparameters are 0-d float32
tensors, so no operation mixes in a float64 scalar. Ordered products and sums are loops over
the reduction index, vectorized over everything else: the demo's per-sample rows, the
outputs, and the P workers (whose shards are stacked into one [P, B_max, ...] tensor, shorter
shards padded with rows whose D is +0.0, which adds nothing to an accumulator that is never
-0.0). The VGC criterion and quantization work on the integer bit patterns
(``tensor.view(torch.int32)``). Messages are built with ``struct`` and ``zlib.crc32``.

Supported: ``--dataset synthetic``, ``mnist1d`` and ``mnist1d-10k``; ``--model mlp`` (any
``--hidden``) and ``--model cnn`` (any ``--channels``) with ``--variance exact`` or
``approx``; the methods ``vgc``, ``hybrid`` (VGC with tau > 0), ``strom``, ``topk`` (any
``--fraction``) and ``none`` (dense float32); residual ``feedback`` or ``reset`` (``reset``
changes VGC and the hybrid only; Strom and top-k always feed back, as the demo does); the
default ``--products ordered``. Not replicated: ``--dataset digits``, ``--validation``,
``--products blas``, ``--compare``, checkpoints and ``--resume``, ``--dump-inputs``, and the
demo's check of the data file's pinned SHA-256.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import hashlib
import itertools
import json
import math
import os
import struct
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

F32 = torch.float32
F64 = torch.float64
I32 = torch.int32
I64 = torch.int64

TRACE_VERSION = 2

# --------------------------------------------------------------------------------------------
# Configuration: the `config` object of docs/trace.md, with the demo's defaults
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The options that fix the arithmetic, in the key order of docs/trace.md's `config`."""

    dataset: str = "synthetic"
    samples: int = 6000
    features: int = 32
    classes: int = 8
    test_fraction: float = 0.2
    hidden: list = field(default_factory=lambda: [128, 64])
    epochs: int = 8
    steps: int | None = None
    batch: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    method: str = "vgc"
    alpha: float = 2.0
    zeta: float = 0.999
    tau: float = 0.0
    residual: str = "feedback"
    fraction: float = 0.01
    seed: int = 0
    checksum_every: int = 10
    products: str = "ordered"  # the fixed-order primitives; the only arithmetic replicated here
    # written to the trace's config only when they differ from these defaults (docs/demo.md)
    model: str = "mlp"
    channels: list = field(default_factory=lambda: [32, 32, 32])
    variance: str = "exact"
    validation: int = 0
    lr_schedule: str = "constant"


OPTIONAL_FIELDS = ("model", "channels", "variance", "validation", "lr_schedule")


def learning_rate(config, t: int, planned: int) -> torch.Tensor:
    """docs/demo.md step 11: float32(lr * f_t), f_t in plain float64 operations."""
    if config.lr_schedule == "constant":
        f = 1.0
    elif config.lr_schedule == "step":
        f = 1.0 if 2 * t < planned else 0.1 if 4 * t < 3 * planned else 0.01
    else:  # cosine: the series of demo.md, not math.cos
        coefficients = [1.0]
        for k in range(1, 16):
            coefficients.append(coefficients[-1] / float((2 * k - 1) * (2 * k)))
        x = (3.141592653589793 * float(t)) / float(planned)
        y = x * x
        acc = coefficients[15]
        for k in range(14, -1, -1):
            acc = coefficients[k] - y * acc
        f = 0.5 * (1.0 + acc)
    return torch.tensor(config.lr * f, dtype=torch.float64).to(F32)


def header_config(config: Config) -> dict:
    """The trace header's `config`: every field, the optional ones only where not default."""
    out = asdict(config)
    default = asdict(Config())
    for name in OPTIONAL_FIELDS:
        if out[name] == default[name]:
            del out[name]
    return out


# --------------------------------------------------------------------------------------------
# Generator: SplitMix64 (docs/demo.md "Generator")
# --------------------------------------------------------------------------------------------

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


def _signed(u: int) -> int:
    """The int64 with the bits of the uint64 ``u`` (tensors hold uint64 values this way)."""
    return u - (1 << 64) if u >= 1 << 63 else u


def mix_int(z: int) -> int:
    """SplitMix64's finalizer on one Python integer (arithmetic modulo 2^64)."""
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def key(seed: int, *tags: int) -> int:
    """key(seed, t1, t2, ...): K = mix(seed + GOLDEN); K = mix((K ^ t) + GOLDEN) per tag."""
    k = mix_int((seed + GOLDEN) & MASK64)
    for t in tags:
        k = mix_int(((k ^ t) + GOLDEN) & MASK64)
    return k


def _srl(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 tensors holding uint64 bits."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """mix() on an int64 tensor; int64 multiplication wraps modulo 2^64 like uint64's."""
    z = (z ^ _srl(z, 30)) * _signed(MIX1)
    z = (z ^ _srl(z, 27)) * _signed(MIX2)
    return z ^ _srl(z, 31)


def bits(k: int, i: torch.Tensor) -> torch.Tensor:
    """bits(K, i) = mix(K + (i + 1) * GOLDEN), the i-th number of stream K (int64 tensor)."""
    return _mix((i.to(I64) + 1) * _signed(GOLDEN) + _signed(k))


def uniform(k: int, i: torch.Tensor) -> torch.Tensor:
    """uniform(K, i) = float64(bits(K, i) >> 11) * 2^-53, in [0, 1), exact."""
    return _srl(bits(k, i), 11).to(F64) * 2.0**-53


def normal(k: int, i: torch.Tensor) -> torch.Tensor:
    """normal(K, i): twelve uniforms added in order from 0.0, minus 6.0 (Irwin-Hall)."""
    base = i.to(I64) * 12
    acc = torch.zeros(i.shape, dtype=F64)
    for j in range(12):
        acc = acc + uniform(k, base + j)
    return acc - 6.0


def below(k: int, i: torch.Tensor, m: int) -> torch.Tensor:
    """below(K, i, m) = ((bits(K, i) >> 32) * m) >> 32, an integer in [0, m)."""
    return _srl(_srl(bits(k, i), 32) * m, 32)


def permutation(k: int, n: int) -> torch.Tensor:
    """0..n-1 sorted by bits(K, i) as unsigned integers, ties by the lower index."""
    b = bits(k, torch.arange(n, dtype=I64)) ^ _signed(1 << 63)  # unsigned order as signed
    return torch.sort(b, stable=True).indices


# --------------------------------------------------------------------------------------------
# Data and initial parameters (docs/demo.md "Data and initial parameters"), float64
# --------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    x_train: torch.Tensor  # float32[N_train, F]
    y_train: torch.Tensor  # int64[N_train]
    x_test: torch.Tensor  # float32[N_test, F]
    y_test: torch.Tensor  # int64[N_test]


def synthetic(seed: int, n: int, f: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic task before the split: x float64[N, F] and labels int64[N]."""
    clusters, latent = 4 * c, 8
    centre = 2.0 * normal(key(seed, 0, 0), torch.arange(clusters * latent).reshape(clusters, latent))
    cluster = below(key(seed, 0, 1), torch.arange(n), clusters)  # int64[N]
    z = centre[cluster] + normal(key(seed, 0, 2), torch.arange(n * latent).reshape(n, latent))
    lmap = normal(key(seed, 0, 3), torch.arange(latent * f).reshape(latent, f)) * (1.0 / math.sqrt(8.0))
    a = torch.zeros((n, f), dtype=F64)
    for d in range(latent):  # in order, from 0.0
        a = a + z[:, d : d + 1] * lmap[d : d + 1, :]
    x = a / (1.0 + a.abs()) + 0.3 * normal(key(seed, 0, 4), torch.arange(n * f).reshape(n, f))
    y = cluster // 4
    flip = uniform(key(seed, 0, 5), torch.arange(n)) < 0.05
    y = torch.where(flip, below(key(seed, 0, 6), torch.arange(n), c), y)
    return x, y


def split_standardise(x: torch.Tensor, y: torch.Tensor, seed: int, test_fraction: float) -> Dataset:
    """Split with permutation(key(seed, 0, 7), N); standardise with the training split's moments."""
    n = x.shape[0]
    order = permutation(key(seed, 0, 7), n)
    n_test = round(test_fraction * n)
    test, train = order[:n_test], order[n_test:]
    xt = x[train]
    mean = torch.zeros(x.shape[1], dtype=F64)
    for row in xt:  # added in order
        mean = mean + row
    mean = mean / xt.shape[0]
    var = torch.zeros(x.shape[1], dtype=F64)
    for row in xt:
        dev = row - mean
        var = var + dev * dev
    var = var / xt.shape[0]
    std = torch.sqrt(var)
    std = torch.where(std == 0.0, torch.ones_like(std), std)
    return Dataset(
        ((xt - mean) / std).to(F32),
        y[train],
        ((x[test] - mean) / std).to(F32),
        y[test],
    )


MNIST1D_FILE = Path(__file__).resolve().parents[2] / "mpi_demo" / "mnist1d.npz"
MNIST1D_TEST = {"mnist1d": ("x_test", "y_test"), "mnist1d-10k": ("x_test_10k", "y_test_10k")}


def mnist1d(name: str, path: Path = MNIST1D_FILE) -> Dataset:
    """MNIST-1D as stored in the data file (docs/demo.md "MNIST-1D"): no shuffle, no scaling.

    Reading the arrays with NumPy is reading a data file, not importing the demo.
    """
    import numpy as np

    with np.load(path) as f:
        arrays = {k: f[k] for k in ("x", "y", *MNIST1D_TEST[name])}
    xt, yt = MNIST1D_TEST[name]

    def f32(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype="<f4").astype(np.float32))

    def i64(a):
        return torch.from_numpy(np.ascontiguousarray(a).astype(np.int64))

    return Dataset(f32(arrays["x"]), i64(arrays["y"]), f32(arrays[xt]), i64(arrays[yt]))


def init_params(shapes: list[tuple[int, int]], seed: int) -> list[torch.Tensor]:
    """He-normal weights W[i, j] = float32(normal(key(seed, 1, l), out*i + j) * sqrt(2/in)), b = 0.

    ``shapes`` holds each weight's (in, out) in segment order; a convolution's W is
    [kernel * C_in, C_out] (im2col columns), so its fan-in is kernel * C_in.
    """
    params = []
    for layer, (n_in, n_out) in enumerate(shapes):
        idx = torch.arange(n_in * n_out).reshape(n_in, n_out)
        params.append((normal(key(seed, 1, layer), idx) * math.sqrt(2.0 / n_in)).to(F32))
        params.append(torch.zeros(n_out, dtype=F32))
    return params


def epoch_order(seed: int, epoch: int, n_train: int) -> torch.Tensor:
    """order_e = permutation(key(seed, 2, e), N_train)."""
    return permutation(key(seed, 2, epoch), n_train)


# --------------------------------------------------------------------------------------------
# Portable primitives (docs/demo.md "Portable primitives")
# --------------------------------------------------------------------------------------------


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Ordered product of a: float32[..., m, K] and b: float32[..., K, n].

    acc = +0.0; for k = 0..K-1: acc = acc (+) (a[..., :, k] (x) b[..., k, :]). Transposed
    operands are passed as views (``w.T``), which reads their elements in place.
    """
    acc = torch.zeros((*a.shape[:-1], b.shape[-1]), dtype=F32)
    for k in range(a.shape[-1]):
        acc = acc + a[..., :, k : k + 1] * b[..., k : k + 1, :]
    return acc


def rowsum(a: torch.Tensor) -> torch.Tensor:
    """rowsum(A)[i] = +0.0 (+) A[i, 0] (+) ... (+) A[i, n-1]."""
    acc = torch.zeros(a.shape[:-1], dtype=F32)
    for j in range(a.shape[-1]):
        acc = acc + a[..., j]
    return acc


INV_LN2 = float.fromhex("0x1.71547652b82fep+0")
LN2_HI = float.fromhex("0x1.62e42fee00000p-1")
LN2_LO = float.fromhex("0x1.a39ef35793c76p-33")
EXP_C = [1.0 / math.factorial(k) for k in range(14)]
SQRT_HALF = float.fromhex("0x1.6a09e667f3bcdp-1")
LN2 = float.fromhex("0x1.62e42fefa39efp-1")
LOG_Q = [0.0] + [2.0 / (2 * k + 1) for k in range(1, 11)]


def exp32(x: torch.Tensor) -> torch.Tensor:
    """exp32 of float32 x, the documented float64 algorithm, rounded once to float32."""
    X = x.to(F64)
    n = torch.round(X * INV_LN2)  # ties to even
    r = (X - n * LN2_HI) - n * LN2_LO
    p = torch.full_like(X, EXP_C[13])
    for k in range(12, -1, -1):
        p = p * r + EXP_C[k]
    # p * 2^n, exact: 2^n built from its bit pattern (a normal float64 for every n that
    # reaches the result; n is clamped only where the result is replaced below)
    scale = ((torch.clamp(n, -1000.0, 1000.0).to(I64) + 1023) << 52).view(F64)
    y = (p * scale).to(F32)
    y = torch.where(X > 89.0, torch.full_like(y, math.inf), y)
    return torch.where(X < -104.0, torch.zeros_like(y), y)


def log32(x: torch.Tensor) -> torch.Tensor:
    """log32 of float32 x > 0, finite: the documented float64 algorithm, rounded once."""
    X = x.to(F64)
    m, e = torch.frexp(X)  # X = m * 2^e, 0.5 <= m < 1
    e = e.to(F64)
    low = m < SQRT_HALF
    m = torch.where(low, 2.0 * m, m)
    e = torch.where(low, e - 1.0, e)
    f = m - 1.0
    u = f / (2.0 + f)
    w = u * u
    P = torch.full_like(X, LOG_Q[10])
    for k in range(9, 0, -1):
        P = P * w + LOG_Q[k]
    L = 2.0 * u + u * (w * P)
    return (e * LN2 + L).to(F32)


# --------------------------------------------------------------------------------------------
# VGC step and the dense codec (docs/algorithm.md sections 3 and 6), vectorized over ranks
# --------------------------------------------------------------------------------------------

DENSE, VGC_Q4, STROM = 0, 1, 2


def _u32_to_i32(u: torch.Tensor) -> torch.Tensor:
    """int64 tensor of u32 values -> int32 tensor with the same bits."""
    return torch.where(u >= 1 << 31, u - (1 << 32), u).to(I32)


def le_bytes(t: torch.Tensor) -> bytes:
    """The little-endian bytes of a 4-byte tensor (float32 or int32), row-major."""
    u = t.contiguous().view(I32).flatten().clone()  # a storage of exactly these elements
    if sys.byteorder == "big":
        u = u.view(torch.uint8).reshape(-1, 4).flip(1).flatten().clone()
    return ctypes.string_at(u.data_ptr(), 4 * u.numel())  # a copy of the contiguous storage


def from_le_bytes(data: bytes) -> torch.Tensor:
    """int32 tensor from little-endian bytes."""
    if not data:
        return torch.zeros(0, dtype=I32)
    u = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    if sys.byteorder == "big":
        u = u.reshape(-1, 4).flip(1).flatten().clone()
    return u.view(I32)


SIGN_BIT = -(1 << 31)  # 0x80000000 as an int32


class StepInputError(ValueError):
    """g or s cannot enter a VGC step; names the segment, the rank and the first bad index."""


def _check(name: str, bad: torch.Tensor, x: torch.Tensor, segment: int) -> None:
    if bool(bad.any()):
        rank, index = (int(i) for i in bad.nonzero()[0])
        value = float(x[rank, index])
        raise StepInputError(f"{name} of segment {segment}, rank {rank}, index {index}: {value}")


@dataclass
class Packet:
    segment_id: int
    n: int
    codec: int
    param: int
    words: torch.Tensor  # int32[count], the u32 words' bit patterns


def vgc_step(
    r: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    s: torch.Tensor,
    alpha: torch.Tensor,
    zeta: torch.Tensor,
    tau: torch.Tensor,
    residual: str,
    segment: int,
) -> tuple[torch.Tensor, torch.Tensor, list[Packet]]:
    """One VGC step on one segment for every rank: float32[P, n] in, new (r, v) and P packets."""
    # 0. validate before anything changes
    _check("g", ~torch.isfinite(g), g, segment)
    _check("s", ~torch.isfinite(s), s, segment)
    _check("s", s < 0, s, segment)
    # 1. accumulate
    r = r + g
    v = v + s
    _check("r + g", ~torch.isfinite(r), r, segment)
    _check("v + s", ~torch.isfinite(v), v, segment)
    # 2. criterion: both products rounded, strict comparison, magnitude floor
    cand = ((r * r) > (alpha * v)) & (r.abs() >= tau)
    r, sent, packets = quantize_send(r, cand, residual, segment)
    v = torch.where(sent, torch.zeros_like(v), zeta * v)
    return r, v, packets


def quantize_send(
    r: torch.Tensor, cand: torch.Tensor, residual: str, segment: int
) -> tuple[torch.Tensor, torch.Tensor, list[Packet]]:
    """Steps 3-5 of the VGC step (shared with top-k): new r, the sent mask and VGC_Q4 packets."""
    # 3. round |r| to a power of two in the log domain, from its bit fields
    rb = r.view(I32)
    ef = (rb >> 23) & 0xFF
    mf = rb & 0x7FFFFF
    e = torch.clamp(ef + (mf >= 0x3504F3).to(I32), max=254)
    sendable = cand & (ef != 0)
    # 4. per-segment exponent base E and 4-bit offsets k
    E = torch.cat([torch.zeros((e.shape[0], 1), dtype=I32), torch.where(sendable, e, 0)], dim=1)
    E = E.amax(dim=1, keepdim=True)  # int32[P, 1]; 0 when nothing is sendable (or n = 0)
    k = E - e
    sent = sendable & (k <= 15)
    # 5. sent values q = sign(r) * 2^(e - 127); residual update
    q = ((rb & SIGN_BIT) | (e << 23)).view(F32)
    r_new = torch.where(sent, r - q if residual == "feedback" else torch.zeros_like(r), r)
    packets = []
    n = r.shape[1]
    for p in range(r.shape[0]):
        index = sent[p].nonzero().flatten()  # increasing
        sign = ((rb[p, index] >> 31) & 1).to(I64)
        words = _u32_to_i32((index << 5) | (sign << 4) | k[p, index].to(I64))
        packets.append(Packet(segment, n, VGC_Q4, int(E[p, 0]) if index.numel() else 0, words))
    return r_new, sent, packets


def f32_bits(x: float) -> int:
    """The bit pattern of float32(x) as an unsigned integer."""
    return struct.unpack("<I", struct.pack("<f", x))[0]


def strom_step(
    r: torch.Tensor, g: torch.Tensor, tau: torch.Tensor, residual: str, segment: int
) -> tuple[torch.Tensor, list[Packet]]:
    """Strom's threshold step (docs/algorithm.md section 4) for every rank; STROM packets.

    r <- r + g; element i is sent when |r_i| >= tau, as q_i = sign(r_i) * tau, and
    r_i <- r_i - q_i (one rounded subtraction). ``residual`` is accepted and not used:
    the demo's Strom always feeds back (docs/algorithm.md section 4).
    """
    _check("g", ~torch.isfinite(g), g, segment)
    r = r + g
    _check("r + g", ~torch.isfinite(r), r, segment)
    sent = r.abs() >= tau
    rb = r.view(I32)
    tau_bits = f32_bits(float(tau))
    q = ((rb & SIGN_BIT) | tau_bits).view(F32)
    r_new = torch.where(sent, r - q, r)
    packets = []
    n = r.shape[1]
    for p in range(r.shape[0]):
        index = sent[p].nonzero().flatten()  # increasing
        sign = ((rb[p, index] >> 31) & 1).to(I64)
        packets.append(Packet(segment, n, STROM, tau_bits, _u32_to_i32((index << 1) | sign)))
    return r_new, packets


def topk_count(fraction: float, n: int) -> int:
    """ceil(fraction * n) (float64 product), at least 1 when n > 0, at most n."""
    return min(n, max(1, math.ceil(fraction * n))) if n else 0


def topk_step(
    r: torch.Tensor, g: torch.Tensor, fraction: float, residual: str, segment: int
) -> tuple[torch.Tensor, list[Packet]]:
    """Top-k (docs/algorithm.md section 5) for every rank: the largest |r|, then VGC's steps 3-5.

    ``residual`` is accepted and not used: the demo's top-k always feeds back.
    """
    _check("g", ~torch.isfinite(g), g, segment)
    r = r + g
    _check("r + g", ~torch.isfinite(r), r, segment)
    count = topk_count(fraction, r.shape[1])
    # |r| as int32 bit patterns orders like |r| (all >= 0, finite); a stable ascending sort
    # of the negated patterns puts the largest first and ties in increasing index
    mag = r.abs().view(I32)
    chosen = torch.sort(-mag, dim=1, stable=True).indices[:, :count]
    cand = torch.zeros_like(r, dtype=torch.bool)
    cand.scatter_(1, chosen, True)
    r_new, _, packets = quantize_send(r, cand, "feedback", segment)
    return r_new, packets


def dense_packets(g: torch.Tensor, segment: int) -> list[Packet]:
    """DENSE packets of g: float32[P, n]; word i is the bit pattern of g[i]."""
    u = g.view(I32)
    return [Packet(segment, g.shape[1], DENSE, 0, u[p]) for p in range(g.shape[0])]


# --------------------------------------------------------------------------------------------
# Messages (docs/format.md)
# --------------------------------------------------------------------------------------------


def encode_segment(p: Packet) -> bytes:
    """20-byte segment header (id, n, codec, 3 reserved, param, count), then the u32 words."""
    count = p.words.numel()
    return struct.pack("<IIB3xII", p.segment_id, p.n, p.codec, p.param, count) + le_bytes(p.words)


def encode_message(packets: list[Packet]) -> tuple[bytes, list[bytes]]:
    """The message bytes and each segment's bytes: header, segments in list order, CRC-32."""
    segments = [encode_segment(p) for p in packets]
    body = struct.pack("<4sHHI", b"VGCM", 1, 0, len(packets)) + b"".join(segments)
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF), segments


class MessageError(ValueError):
    """A received message is malformed (this replica checks framing and CRC only)."""


def decode_values(msg: bytes, sizes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per segment id, (indices int64[count], values float32[count]) of one message."""
    if len(msg) < 16 or msg[:4] != b"VGCM" or struct.unpack_from("<H", msg, 4)[0] != 1:
        raise MessageError("bad header")
    if struct.unpack_from("<I", msg, len(msg) - 4)[0] != zlib.crc32(msg[:-4]) & 0xFFFFFFFF:
        raise MessageError("CRC mismatch")
    (count_segments,) = struct.unpack_from("<I", msg, 8)
    out: list = [None] * len(sizes)
    off = 12
    for _ in range(count_segments):
        sid, n, codec, param, count = struct.unpack_from("<IIB3xII", msg, off)
        words = from_le_bytes(msg[off + 20 : off + 20 + 4 * count]).to(I64) & 0xFFFFFFFF
        off += 20 + 4 * count
        if sid >= len(sizes) or out[sid] is not None or n != sizes[sid]:
            raise MessageError(f"segment {sid}: unexpected id or length")
        if codec == DENSE:
            vals = _u32_to_i32(words).view(F32)
            out[sid] = (torch.arange(n), vals)
        elif codec == VGC_Q4:
            big_e = param & 0xFF
            vbits = ((words >> 4) & 1) << 31 | (big_e - (words & 15)) << 23
            out[sid] = (words >> 5, _u32_to_i32(vbits).view(F32))
        elif codec == STROM:
            vbits = (words & 1) << 31 | param
            out[sid] = (words >> 1, _u32_to_i32(vbits).view(F32))
        else:
            raise MessageError(f"segment {sid}: codec {codec} not handled here")
    if off != len(msg) - 4 or any(o is None for o in out):
        raise MessageError("segments do not match the layout")
    return out


def decode_accumulate(messages: list[bytes], sizes: list[int]) -> list[torch.Tensor]:
    """g_hat per segment: from +0.0 add rank 0's values, then rank 1's, ...; divide by float32(P)."""
    acc = [torch.zeros(n, dtype=F32) for n in sizes]
    decoded = [decode_values(m, sizes) for m in messages]
    for per_rank in decoded:  # rank order
        for j, (index, values) in enumerate(per_rank):
            acc[j][index] = acc[j][index] + values
    p32 = torch.tensor(len(messages), dtype=F32)
    return [a / p32 for a in acc]


# --------------------------------------------------------------------------------------------
# The model: forward, loss, backward, g and s (docs/demo.md "The step", 3-7)
# --------------------------------------------------------------------------------------------


def forward(params: list[torch.Tensor], x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Layer inputs h_0..h_{L-1} and the logits z; rows are independent samples."""
    hs = [x]
    n_layers = len(params) // 2
    for li in range(n_layers):
        y = mm(hs[-1], params[2 * li]) + params[2 * li + 1]
        if li == n_layers - 1:
            return hs, y
        hs.append(torch.where(y > 0, y, torch.zeros_like(y)))
    raise AssertionError("unreachable")


def softmax_loss(z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities p and per-sample float32 losses log32(T) (-) t[label]."""
    mx = z.max(dim=1, keepdim=True).values
    t = z - mx
    e = exp32(t)
    T = rowsum(e)
    p = e / T[:, None]
    return p, log32(T) - t[torch.arange(z.shape[0]), labels]


def shard_layout(batch: int, ranks: int) -> list[tuple[int, int]]:
    """[start_w, stop_w) per rank: the first batch mod P ranks take one sample more."""
    out, start = [], 0
    for w in range(ranks):
        size = batch // ranks + (1 if w < batch % ranks else 0)
        out.append((start, start + size))
        start += size
    return out


@dataclass
class Shards:
    """Each rank's rows of the global batch as a padded [P, B_max] gather (docs/demo.md step 2)."""

    gather: torch.Tensor  # int64[P, B_max], row indices (0 in padded slots)
    valid: torch.Tensor  # bool[P, B_max]
    bw: torch.Tensor  # float32[batch]: each row's own float32(B_w)

    @staticmethod
    def of(shards: list[tuple[int, int]]) -> Shards:
        ranks = len(shards)
        b_max = max(stop - start for start, stop in shards)
        gather = torch.zeros((ranks, b_max), dtype=I64)
        valid = torch.zeros((ranks, b_max), dtype=torch.bool)
        bw = torch.empty(shards[-1][1], dtype=F32)
        for w, (start, stop) in enumerate(shards):
            gather[w, : stop - start] = torch.arange(start, stop)
            valid[w, : stop - start] = True
            bw[start:stop] = float(stop - start)
        return Shards(gather, valid, bw)

    def rows(self, a: torch.Tensor, zero_padded: bool = False) -> torch.Tensor:
        """[batch, ...] -> [P, B_max, ...]; padded rows are +0.0 when ``zero_padded``."""
        out = a[self.gather]
        if zero_padded:
            mask = self.valid.reshape(*self.valid.shape, *([1] * (a.dim() - 1)))
            out = torch.where(mask, out, torch.zeros((), dtype=a.dtype))
        return out


def logits_delta(z: torch.Tensor, labels: torch.Tensor, sh: Shards) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample losses and D of the logits (step 5), each row divided by its rank's float32(B_w)."""
    p, losses = softmax_loss(z, labels)
    onehot = torch.zeros_like(p, dtype=torch.bool)
    onehot[torch.arange(p.shape[0]), labels] = True
    return losses, torch.where(onehot, p - 1.0, p) / sh.bw[:, None]


def dense_grad_var(
    h: torch.Tensor, D: torch.Tensor, sh: Shards, with_s: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """g_W, g_b (and s_W, s_b) of a dense layer for every rank (steps 6-7), float32[P, n].

    Ordered over each rank's samples b = 0..B_w-1; padded rows carry D = +0.0, which adds
    nothing to an accumulator that is never -0.0.
    """
    ranks = sh.gather.shape[0]
    hg = sh.rows(h)  # [P, B_max, in]
    Dg = sh.rows(D, zero_padded=True)  # [P, B_max, out]
    gw = mm(hg.transpose(1, 2), Dg).reshape(ranks, -1)
    gb = rowsum(Dg.transpose(1, 2))
    if not with_s:
        return gw, gb, None, None
    D2 = Dg * Dg
    sw = mm((hg * hg).transpose(1, 2), D2).reshape(ranks, -1)
    sb = rowsum(D2.transpose(1, 2))
    return gw, gb, sw, sb


def grads(
    params: list[torch.Tensor],
    x: torch.Tensor,
    labels: torch.Tensor,
    shards: list[tuple[int, int]],
    with_s: bool,
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, torch.Tensor, torch.Tensor]:
    """The MLP: every rank's g (and s) per segment, float32[P, n]; per-sample losses and logits.

    The forward and backward pass run on the whole global mini-batch at once (each sample's
    row is computed alone), with each row's D divided by its own rank's float32(B_w). The
    sums over samples then run per rank on a [P, B_max, ...] view, padded rows carrying D = 0.
    """
    sh = Shards.of(shards)
    hs, z = forward(params, x)
    losses, D = logits_delta(z, labels, sh)
    n_layers = len(params) // 2
    g: list = [None] * len(params)
    s: list = [None] * len(params)
    for li in range(n_layers - 1, -1, -1):
        h = hs[li]
        g[2 * li], g[2 * li + 1], s[2 * li], s[2 * li + 1] = dense_grad_var(h, D, sh, with_s)
        if li > 0:
            T = mm(D, params[2 * li].T)
            D = torch.where(h > 0, T, torch.zeros_like(T))
    return g, (s if with_s else None), losses, z


# --------------------------------------------------------------------------------------------
# The CNN (docs/demo.md "CNN" and "The CNN's steps 3, 5, 6 and 7"; docs/algorithm.md 2.1)
# --------------------------------------------------------------------------------------------

CONV_GEOMETRY = ((5, 2, 2), (3, 2, 1), (3, 2, 1))  # (kernel, stride, padding) of conv0..conv2
SIGNAL_LENGTH = 40  # MNIST-1D
MNIST1D_CLASSES = 10


def conv_lengths(length: int = SIGNAL_LENGTH) -> list[int]:
    """Input length of conv0, conv1, conv2 and the last output length: 40, 20, 10, 5."""
    out = [length]
    for kernel, stride, pad in CONV_GEOMETRY:
        out.append((out[-1] + 2 * pad - kernel) // stride + 1)
    return out


def cnn_shapes(channels: list[int]) -> tuple[list[str], list[tuple[int, int]]]:
    """Segment names and (in, out) of each weight: conv W is [kernel * C_in, C_out]."""
    lengths = conv_lengths()
    c_in = [1, *channels]
    shapes = [(kernel * c_in[i], channels[i]) for i, (kernel, _, _) in enumerate(CONV_GEOMETRY)]
    shapes.append((lengths[-1] * channels[-1], MNIST1D_CLASSES))
    names = []
    for layer in ("conv0", "conv1", "conv2", "dense"):
        names += [f"{layer}.W", f"{layer}.b"]
    return names, shapes


def im2col(h: torch.Tensor, kernel: int, stride: int, pad: int) -> torch.Tensor:
    """X[b, p, k*C + c] = hpad[b, p*stride + k, c] (zero padding; copies only): [B, P, kernel*C]."""
    B, L, C = h.shape
    z = torch.zeros((B, pad, C), dtype=F32)
    hpad = torch.cat([z, h, z], dim=1)
    n_pos = (L + 2 * pad - kernel) // stride + 1
    idx = torch.arange(n_pos)[:, None] * stride + torch.arange(kernel)[None, :]  # [P, kernel]
    return hpad[:, idx, :].reshape(B, n_pos, kernel * C)


def col2im(T: torch.Tensor, length: int, kernel: int, stride: int, pad: int) -> torch.Tensor:
    """The input gradient of im2col: each padded input element starts at +0.0 and adds the
    entries of T copied from it in increasing kernel offset k; then the padding is dropped."""
    B, n_pos, K = T.shape
    C = K // kernel
    acc = torch.zeros((B, length + 2 * pad, C), dtype=F32)
    for k in range(kernel):  # for a fixed k, the positions p*stride + k are distinct
        at = slice(k, k + stride * (n_pos - 1) + 1, stride)
        acc[:, at, :] = acc[:, at, :] + T[:, :, k * C : (k + 1) * C]
    return acc[:, pad : pad + length, :]


def relu(y: torch.Tensor) -> torch.Tensor:
    return torch.where(y > 0, y, torch.zeros_like(y))


def cnn_forward(
    params: list[torch.Tensor], x: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Patches X_l and inputs h_l of the three convolutions, the dense input and the logits."""
    h = x[:, :, None]  # [B, 40, 1], channels last
    patches, inputs = [], []
    for li, (kernel, stride, pad) in enumerate(CONV_GEOMETRY):
        X = im2col(h, kernel, stride, pad)
        inputs.append(h)
        patches.append(X)
        h = relu(mm(X, params[2 * li]) + params[2 * li + 1])  # rows are (b, p); each alone
    flat = h.reshape(h.shape[0], -1)  # position-major, then channel
    return patches, inputs, flat, mm(flat, params[6]) + params[7]


def cnn_logits(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return cnn_forward(params, x)[3]


def conv_grad_var(
    X: torch.Tensor, D: torch.Tensor, sh: Shards, form: str | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """g_W, g_b and s_W, s_b of a convolution per rank (docs/algorithm.md 2.1), float32[P, n].

    X: float32[batch, P_l, K], D: float32[batch, P_l, out]; ``form`` is "exact", "approx" or
    None (no s). Padded samples carry D = +0.0: their products are +-0.0 and their G_b and
    e_b are +0.0, none of which changes an accumulator that is never -0.0.
    """
    ranks = sh.gather.shape[0]
    Xg = sh.rows(X)  # [P, B_max, P_l, K]
    Dg = sh.rows(D, zero_padded=True)  # [P, B_max, P_l, out]
    _, b_max, n_pos, K = Xg.shape
    out = Dg.shape[-1]
    Xr = Xg.reshape(ranks, b_max * n_pos, K)  # rows b-major, then p
    Dr = Dg.reshape(ranks, b_max * n_pos, out)
    gw = mm(Xr.transpose(1, 2), Dr).reshape(ranks, -1)
    gb = rowsum(Dr.transpose(1, 2))
    if form is None:
        return gw, gb, None, None
    if form == "approx":
        D2 = Dr * Dr
        sw = mm((Xr * Xr).transpose(1, 2), D2).reshape(ranks, -1)
        sb = rowsum(D2.transpose(1, 2))
        return gw, gb, sw, sb
    # exact: G_b = mm(X_b^T, D_b) over p; s_W = sum over b, in order, of G_b (x) G_b
    G = mm(Xg.transpose(2, 3), Dg)  # [P, B_max, K, out]
    e = rowsum(Dg.transpose(2, 3))  # [P, B_max, out] = colsum(D_b)
    sw = torch.zeros((ranks, K, out), dtype=F32)
    sb = torch.zeros((ranks, out), dtype=F32)
    for b in range(b_max):
        sw = sw + G[:, b] * G[:, b]
        sb = sb + e[:, b] * e[:, b]
    return gw, gb, sw.reshape(ranks, -1), sb


def cnn_grads(
    params: list[torch.Tensor],
    x: torch.Tensor,
    labels: torch.Tensor,
    shards: list[tuple[int, int]],
    form: str | None,
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, torch.Tensor, torch.Tensor]:
    """The CNN: every rank's g (and s, in ``form``) per segment; per-sample losses and logits."""
    sh = Shards.of(shards)
    patches, inputs, flat, z = cnn_forward(params, x)
    losses, D = logits_delta(z, labels, sh)
    g: list = [None] * len(params)
    s: list = [None] * len(params)
    g[6], g[7], s[6], s[7] = dense_grad_var(flat, D, sh, form is not None)
    T = mm(D, params[6].T)
    D = relu_mask(flat, T).reshape(patches[2].shape[0], patches[2].shape[1], -1)  # [B, P_2, C_2]
    lengths = conv_lengths()
    for li in range(2, -1, -1):
        g[2 * li], g[2 * li + 1], s[2 * li], s[2 * li + 1] = conv_grad_var(patches[li], D, sh, form)
        if li > 0:
            kernel, stride, pad = CONV_GEOMETRY[li]
            T = col2im(mm(D, params[2 * li].T), lengths[li], kernel, stride, pad)
            D = relu_mask(inputs[li], T)
    return g, (s if form is not None else None), losses, z


def relu_mask(h: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """T where ReLU's output h > 0, else +0.0."""
    return torch.where(h > 0, T, torch.zeros_like(T))


def correct(z: torch.Tensor, labels: torch.Tensor) -> int:
    """Samples whose label is the first index of the largest logit."""
    return int((z.argmax(dim=1) == labels).sum())


# --------------------------------------------------------------------------------------------
# Trace (docs/trace.md)
# --------------------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Trace:
    def __init__(self, path: str | None):
        self.f = open(path, "w", encoding="ascii") if path else None

    def write(self, record: dict) -> None:
        if self.f:
            self.f.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self.f:
            self.f.close()


# --------------------------------------------------------------------------------------------
# The job (docs/demo.md "The step", 1-2 and 8-12)
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    steps: int
    test_accuracy: float
    params: list[torch.Tensor]
    seconds: float


def train(config: Config, ranks: int, trace_path: str | None = None) -> Result:
    """Run the job with ``ranks`` simulated workers; write the trace when a path is given."""
    if config.dataset not in ("synthetic", "mnist1d", "mnist1d-10k"):
        raise ValueError(f"--dataset {config.dataset}: this replica has synthetic, mnist1d, mnist1d-10k")
    if config.model not in ("mlp", "cnn"):
        raise ValueError(f"--model {config.model}: must be mlp or cnn")
    if config.model == "cnn" and not config.dataset.startswith("mnist1d"):
        raise ValueError("--model cnn needs --dataset mnist1d or mnist1d-10k")
    if config.model == "cnn" and len(config.channels) != 3:
        raise ValueError(f"--channels {config.channels}: the CNN has three convolutions")
    if config.variance not in ("exact", "approx"):
        raise ValueError(f"--variance {config.variance}: must be exact or approx")
    if config.validation != 0:
        raise ValueError("--validation: not replicated")
    if config.method not in ("vgc", "hybrid", "strom", "topk", "none"):
        raise ValueError(f"--method {config.method}: must be vgc, hybrid, strom, topk or none")
    if config.method in ("strom", "hybrid") and not config.tau > 0:
        raise ValueError(f"--method {config.method} needs --tau > 0")
    if config.method == "topk" and not 0 < config.fraction <= 1:
        raise ValueError(f"--fraction {config.fraction}: must be in (0, 1]")
    if config.residual == "reset" and config.method in ("strom", "topk"):
        raise ValueError(f"--residual reset: --method {config.method} always feeds back its residual")
    if config.products != "ordered":
        raise ValueError(f"--products {config.products}: only 'ordered' has a documented arithmetic")
    if config.residual not in ("feedback", "reset"):
        raise ValueError(f"--residual {config.residual}: must be feedback or reset")
    if not 1 <= ranks <= config.batch:
        raise ValueError(f"--ranks {ranks}: must be between 1 and --batch ({config.batch})")
    t0 = time.perf_counter()
    if config.dataset == "synthetic":
        x, y = synthetic(config.seed, config.samples, config.features, config.classes)
        data = split_standardise(x, y, config.seed, config.test_fraction)
        n_features, n_classes = config.features, config.classes
    else:
        data = mnist1d(config.dataset)
        n_features, n_classes = SIGNAL_LENGTH, MNIST1D_CLASSES
    if config.model == "cnn":
        names, weight_shapes = cnn_shapes(config.channels)
        logits = cnn_logits
    else:
        widths = [n_features, *config.hidden, n_classes]
        weight_shapes = list(itertools.pairwise(widths))
        names = []
        for layer in range(len(weight_shapes)):
            names += [f"layer{layer}.W", f"layer{layer}.b"]

        def logits(params, x):
            return forward(params, x)[1]

    params = init_params(weight_shapes, config.seed)
    shapes = [list(p.shape) for p in params]
    sizes = [p.numel() for p in params]

    n_train = data.x_train.shape[0]
    per_epoch = n_train // config.batch
    total = planned = config.epochs * per_epoch
    if config.steps is not None:
        total = min(total, config.steps)
    shards = shard_layout(config.batch, ranks)

    alpha = torch.tensor(config.alpha, dtype=F32)
    zeta = torch.tensor(config.zeta, dtype=F32)
    tau = torch.tensor(config.tau, dtype=F32)
    momentum = torch.tensor(config.momentum, dtype=F32)
    decay = torch.tensor(config.weight_decay, dtype=F32)
    r = [torch.zeros((ranks, n), dtype=F32) for n in sizes]
    v = [torch.zeros((ranks, n), dtype=F32) for n in sizes]
    m = [torch.zeros_like(p) for p in params]
    with_s = config.method in ("vgc", "hybrid")  # step 7: s only where the criterion uses it

    trace = Trace(trace_path)
    trace.write(
        {
            "type": "header",
            "format": "vgc-demo-trace",
            "version": TRACE_VERSION,
            "config": header_config(config),
            "ranks": ranks,
            "segments": [{"name": a, "shape": b, "n": c} for a, b, c in zip(names, shapes, sizes)],
            "steps": total,
        }
    )
    order = None
    right = seen = 0
    test_acc = float("nan")
    for t in range(total):
        epoch, i = divmod(t, per_epoch)
        if i == 0:
            order = epoch_order(config.seed, epoch, n_train)
            right = seen = 0
        idx = order[i * config.batch : (i + 1) * config.batch]
        xb, yb = data.x_train[idx], data.y_train[idx]

        if config.model == "cnn":
            g, s, losses, z = cnn_grads(params, xb, yb, shards, config.variance if with_s else None)
        else:
            g, s, losses, z = grads(params, xb, yb, shards, with_s)
        per_rank = [[] for _ in range(ranks)]
        for j in range(len(params)):
            if with_s:
                r[j], v[j], packets = vgc_step(r[j], v[j], g[j], s[j], alpha, zeta, tau, config.residual, j)
            elif config.method == "strom":
                r[j], packets = strom_step(r[j], g[j], tau, config.residual, j)
            elif config.method == "topk":
                r[j], packets = topk_step(r[j], g[j], config.fraction, config.residual, j)
            else:
                packets = dense_packets(g[j], j)
            for w in range(ranks):
                per_rank[w].append(packets[w])
        encoded = [encode_message(pk) for pk in per_rank]
        messages = [msg for msg, _ in encoded]
        g_hat = decode_accumulate(messages, sizes)

        lr = learning_rate(config, t, planned)
        for j in range(len(params)):  # 11. update
            gh = g_hat[j].reshape(params[j].shape)
            d = gh + decay * params[j] if params[j].dim() == 2 else gh
            m[j] = momentum * m[j] + d
            params[j] = params[j] - lr * m[j]

        loss_total = 0.0  # 12. bookkeeping, float64
        for start, stop in shards:
            rank_sum = 0.0
            for value in losses[start:stop].tolist():
                rank_sum += value
            loss_total += rank_sum
        right += correct(z, yb)
        seen += config.batch
        trace.write(
            {
                "type": "step",
                "step": t,
                "epoch": epoch,
                "loss": loss_total / config.batch,
                "ranks": [
                    {
                        "bytes": len(msg),
                        "sha256": sha(msg),
                        "sent": [p.words.numel() for p in pk],
                        "segments": [sha(b) for b in seg_bytes],
                    }
                    for (msg, seg_bytes), pk in zip(encoded, per_rank)
                ],
            }
        )
        if (t + 1) % config.checksum_every == 0:
            trace.write({"type": "params", "step": t, "sha256": [sha(le_bytes(p)) for p in params]})
        if i == per_epoch - 1 or t == total - 1:
            zt = logits(params, data.x_test)
            test_acc = correct(zt, data.y_test) / data.x_test.shape[0]
            trace.write(
                {
                    "type": "eval",
                    "epoch": epoch,
                    "step": t,
                    "train_accuracy": right / seen,
                    "test_accuracy": test_acc,
                }
            )
    trace.write(
        {
            "type": "final",
            "steps": total,
            "sha256": [sha(le_bytes(p)) for p in params],
            "params": [base64.b64encode(le_bytes(p)).decode("ascii") for p in params],
        }
    )
    trace.close()
    return Result(total, test_acc, params, time.perf_counter() - t0)


def _version() -> str:
    """vgc_ref's version, read from the installed package's metadata (this file imports nothing of it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vgc_ref")
    except PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    d = Config()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", action="version", version=f"%(prog)s (vgc_ref {_version()})")
    ap.add_argument("--method", choices=["vgc", "hybrid", "strom", "topk", "none"], default=d.method)
    ap.add_argument("--dataset", choices=["synthetic", "mnist1d", "mnist1d-10k"], default=d.dataset)
    ap.add_argument("--model", choices=["mlp", "cnn"], default=d.model)
    ap.add_argument("--channels", default="32,32,32", help="cnn: the 3 convolutions' channels")
    ap.add_argument("--variance", choices=["exact", "approx"], default=d.variance)
    ap.add_argument("--ranks", type=int, default=4, help="simulated workers (default: 4)")
    ap.add_argument("--trace", metavar="PATH", help="write the trace (docs/trace.md)")
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    for name in ("samples", "features", "classes", "epochs", "batch", "seed", "checksum_every"):
        ap.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("test_fraction", "lr", "momentum", "weight_decay", "alpha", "zeta", "tau", "fraction"):
        ap.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    ap.add_argument("--hidden", default="128,64", help="hidden widths (default: 128,64)")
    ap.add_argument("--residual", choices=["feedback", "reset"], default=d.residual)
    ap.add_argument("--lr-schedule", choices=["constant", "step", "cosine"], default=d.lr_schedule)
    a = ap.parse_args(argv)
    if os.environ.get("VGC_PARSE_ONLY") == "1":  # the docs' commands test (tests/test_doc_commands.py)
        print(f"{ap.prog}: arguments parsed")
        return 0
    config = Config(
        dataset=a.dataset,
        samples=a.samples,
        features=a.features,
        classes=a.classes,
        test_fraction=a.test_fraction,
        hidden=[int(h) for h in a.hidden.split(",") if h],
        epochs=a.epochs,
        steps=a.steps,
        batch=a.batch,
        lr=a.lr,
        momentum=a.momentum,
        weight_decay=a.weight_decay,
        method=a.method,
        alpha=a.alpha,
        zeta=a.zeta,
        tau=a.tau,
        residual=a.residual,
        fraction=a.fraction,
        seed=a.seed,
        checksum_every=a.checksum_every,
        model=a.model,
        channels=[int(c) for c in a.channels.split(",") if c],
        variance=a.variance,
        lr_schedule=a.lr_schedule,
    )
    torch.set_num_threads(1)
    try:
        res = train(config, a.ranks, a.trace)
    except ValueError as exc:
        print(f"replica: {exc}", file=sys.stderr)
        return 2
    print(
        f"{res.steps} steps, {a.ranks} ranks, method {config.method}: "
        f"test accuracy {100 * res.test_accuracy:.1f}%, {res.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
