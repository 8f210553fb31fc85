"""A deliberately slow, element-by-element transcription of docs/algorithm.md sections 3 and 4.

It shares no code with vgc_ref: scalars are numpy.float32 (so every add and multiply
is one rounded float32 operation) and bit fields come from ``struct``. Tests compare
the vectorized reference (and every backend) against it.
"""

from __future__ import annotations

import struct

import numpy as np


def bits_of(x: np.float32) -> int:
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


def float_of(bits: int) -> np.float32:
    return np.float32(struct.unpack("<f", struct.pack("<I", bits))[0])


def slow_vgc_step(r, v, g, s, alpha, zeta, tau, residual="feedback"):
    """Return (new r, new v, E, words) without modifying the inputs."""
    r = [np.float32(x) for x in r]
    v = [np.float32(x) for x in v]
    alpha, zeta, tau = np.float32(alpha), np.float32(zeta), np.float32(tau)
    n = len(r)
    with np.errstate(over="ignore", under="ignore"):
        for i in range(n):
            r[i] = np.float32(r[i] + np.float32(g[i]))
            v[i] = np.float32(v[i] + np.float32(s[i]))
        candidate = [(r[i] * r[i]) > (alpha * v[i]) and abs(r[i]) >= tau for i in range(n)]
    e = [0] * n
    sendable = [False] * n
    for i in range(n):
        b = bits_of(abs(r[i]))
        ef, mf = (b >> 23) & 0xFF, b & 0x7FFFFF
        e[i] = min(ef + 1 if mf >= 0x3504F3 else ef, 254)
        sendable[i] = candidate[i] and ef != 0
    E = max([e[i] for i in range(n) if sendable[i]], default=0)
    words = []
    for i in range(n):
        if sendable[i] and E - e[i] <= 15:
            sign = bits_of(r[i]) >> 31
            words.append((i << 5) | (sign << 4) | (E - e[i]))
            q = float_of((sign << 31) | (e[i] << 23))
            r[i] = np.float32(r[i] - q) if residual == "feedback" else np.float32(0)
            v[i] = np.float32(0)
        else:
            v[i] = np.float32(zeta * v[i])
    return np.array(r, np.float32), np.array(v, np.float32), E, np.array(words, np.uint32)


def slow_strom_step(r, g, tau):
    """Return (new r, words) without modifying the inputs."""
    r = [np.float32(x) for x in r]
    tau = np.float32(tau)
    words = []
    for i in range(len(r)):
        r[i] = np.float32(r[i] + np.float32(g[i]))
        if abs(r[i]) >= tau:
            sign = bits_of(r[i]) >> 31
            words.append((i << 1) | sign)
            r[i] = np.float32(r[i] - (-tau if sign else tau))
    return np.array(r, np.float32), np.array(words, np.uint32)


def slow_aggregate(values_per_rank, n):
    """values_per_rank[w] is a dict index -> float32; rank-ordered float32 sum / P."""
    acc = [np.float32(0)] * n
    for values in values_per_rank:
        for i, q in sorted(values.items()):
            acc[i] = np.float32(acc[i] + np.float32(q))
    p = np.float32(len(values_per_rank))
    return np.array([np.float32(a / p) for a in acc], np.float32)


def slow_topk_step(r, g, count):
    """Top-k with error feedback, quantized as VGC: return (new r, E, words)."""
    r = [np.float32(np.float32(a) + np.float32(b)) for a, b in zip(r, g)]
    n = len(r)
    chosen = sorted(range(n), key=lambda i: (-abs(float(r[i])), i))[:count]
    e = {}
    for i in chosen:
        b = bits_of(abs(r[i]))
        ef, mf = (b >> 23) & 0xFF, b & 0x7FFFFF
        if ef != 0:
            e[i] = min(ef + 1 if mf >= 0x3504F3 else ef, 254)
    E = max(e.values(), default=0)
    words = []
    for i in sorted(e):
        if E - e[i] <= 15:
            sign = bits_of(r[i]) >> 31
            words.append((i << 5) | (sign << 4) | (E - e[i]))
            r[i] = np.float32(r[i] - float_of((sign << 31) | (e[i] << 23)))
    return np.array(r, np.float32), E, np.array(words, np.uint32)
