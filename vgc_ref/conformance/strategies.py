"""Hypothesis strategies of the suite: float32 vectors rich in edge values, hyperparameters,
valid packets, and single-step inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vgc_ref.conformance.cases import F32_MAX, F32_SUB, F32_TINY, SQRT2
from vgc_ref.packet import Codec, Packet

#: Values that exercise the edges of the criterion and of quantization.
EDGE_VALUES = [
    0.0,
    -0.0,
    F32_SUB,
    -F32_SUB,
    F32_TINY,
    -F32_TINY,
    1.0,
    -1.0,
    0.5,
    2.0,
    SQRT2,
    float(np.nextafter(np.float32(SQRT2), np.float32(0))),
    2.0**-15,
    -(2.0**-16),
    F32_MAX,
    -F32_MAX,
    3e38,
    1e19,  # r*r overflows to inf
    1e-23,  # r*r underflows to 0
]


def float32s(min_value=None, max_value=None, edge=True):
    """Finite float32 scalars, with the edge values drawn often."""
    base = st.floats(
        min_value=min_value, max_value=max_value, width=32, allow_nan=False, allow_infinity=False
    )
    if not edge:
        return base
    edges = [
        x
        for x in EDGE_VALUES
        if (min_value is None or x >= min_value) and (max_value is None or x <= max_value)
    ]
    return st.one_of(base, st.sampled_from(edges))


def vectors(n, min_value=None, max_value=None, edge=True):
    """float32[n] with finite elements."""
    return hnp.arrays(np.float32, n, elements=float32s(min_value, max_value, edge))


def dyadic_vectors(n, scale=2.0**-4, max_int=64):
    """float32[n] of small integers times a power of two: their sums are exact."""
    return hnp.arrays(
        np.float32, n, elements=st.integers(-max_int, max_int).map(lambda i: np.float32(i * scale))
    )


def vgc_hyperparameters():
    """VGCParams keywords: alpha, zeta, tau (0 is pure VGC, > 0 the hybrid) and the residual mode."""
    return st.fixed_dictionaries(
        {
            "alpha": st.one_of(
                st.sampled_from([2.0, 1.0, 0.5, 1e-3, 1e3]), st.floats(2.0**-20, 2.0**20, width=32)
            ),
            "zeta": st.one_of(st.sampled_from([0.999, 0.0, 1.0, 0.5]), st.floats(0.0, 1.0, width=32)),
            "tau": st.one_of(
                st.just(0.0), st.sampled_from([1e-3, 1.0, 2.0**-15]), st.floats(0.0, 16.0, width=32)
            ),
            "residual": st.sampled_from(["feedback", "reset"]),
        }
    )


def strom_taus():
    return st.one_of(st.sampled_from([1.0, 0.5, 1e-3, F32_SUB]), st.floats(2.0**-100, 2.0**100, width=32))


@st.composite
def step_inputs(draw, max_n=40):
    """(r, v, g, s) float32[n] with v, s >= 0 and r + g, v + s finite."""
    n = draw(st.integers(0, max_n), label="n")
    # Magnitudes in a window sometimes, so that many elements fall within k <= 15 of each other.
    window = draw(st.sampled_from([None, (2.0**-12, 2.0**12)]), label="window")
    if window is None:
        r, g = draw(vectors(n), label="r"), draw(vectors(n), label="g")
    else:
        mag = st.floats(*window, width=32)
        signed = st.tuples(mag, st.booleans()).map(lambda t: -t[0] if t[1] else t[0])
        r = draw(hnp.arrays(np.float32, n, elements=signed), label="r")
        g = draw(hnp.arrays(np.float32, n, elements=signed), label="g")
    v = draw(vectors(n, min_value=0.0), label="v")
    s = draw(vectors(n, min_value=0.0), label="s")
    with np.errstate(over="ignore"):
        assume(np.isfinite(r + g).all() and np.isfinite(v + s).all())
    return r, v, g, s


@st.composite
def valid_packets(draw, segment_id=0, max_n=64, n=None, dense_values=None):
    """One valid packet of any codec (what a step could send), of length ``n`` when given.

    ``dense_values`` is a strategy for the elements of a DENSE packet (default: finite
    float32 with edge values).
    """
    codec = draw(st.sampled_from(list(Codec)), label="codec")
    if n is None:
        n = draw(st.one_of(st.integers(0, max_n), st.just(1 << 27)), label="n")
    if codec == Codec.DENSE:
        n = min(n, max_n)
        elements = float32s() if dense_values is None else dense_values
        values = draw(hnp.arrays(np.float32, n, elements=elements), label="dense values")
        return Packet(segment_id, n, codec, 0, values.view(np.uint32))
    if n == 0:
        index = np.zeros(0, np.int64)
    else:
        chosen = draw(
            st.lists(st.one_of(st.integers(0, n - 1), st.just(n - 1)), max_size=min(n, 16), unique=True),
            label="indices",
        )
        index = np.array(sorted(chosen), np.int64)
    sign = np.array(draw(st.lists(st.integers(0, 1), min_size=index.size, max_size=index.size)), np.uint32)
    if codec == Codec.STROM:
        tau = draw(strom_taus(), label="tau")
        words = (index.astype(np.uint32) << np.uint32(1)) | sign
        return Packet(segment_id, n, codec, int(np.float32(tau).view(np.uint32)), words)
    if index.size == 0:
        return Packet(segment_id, n, codec, 0, np.zeros(0, np.uint32))
    E = draw(st.integers(1, 254), label="E")
    k = np.array(
        draw(st.lists(st.integers(0, min(15, E - 1)), min_size=index.size, max_size=index.size)), np.uint32
    )
    k[draw(st.integers(0, index.size - 1), label="word with k = 0")] = 0  # E is the largest exponent sent
    words = (index.astype(np.uint32) << np.uint32(5)) | (sign << np.uint32(4)) | k
    return Packet(segment_id, n, codec, E, words)


@st.composite
def packet_lists(draw, max_segments=4):
    """A valid message's packets: unique segment ids in any order."""
    count = draw(st.integers(0, max_segments), label="segments")
    ids = draw(st.lists(st.integers(0, 2**32 - 1), min_size=count, max_size=count, unique=True), label="ids")
    return [draw(valid_packets(segment_id=i)) for i in ids]
