"""Hand-picked edge cases: single steps, aggregations, and one malformed message per class.

The Hypothesis properties draw edge values often, but whether a given edge is hit still
depends on the draw. These tables make the decisive inputs explicit, so a bug at an edge
(>= for >, a rounding constant, k = 16, a clamp, a byte order) is caught on every run.
They are also the source of the golden vectors (:mod:`vgc_ref.vectors`).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal, 2^-126
F32_SUB = float(np.float32(1e-45))  # smallest subnormal, 2^-149
SQRT2 = float(np.float32(1.4142135))  # mantissa 0x3504F3: rounds up to the next power of two
BELOW_SQRT2 = float(np.nextafter(np.float32(SQRT2), np.float32(0)))  # mantissa 0x3504F2: rounds down
ONE_MINUS = float(np.nextafter(np.float32(1), np.float32(0)))


# --------------------------------------------------------------------------------------
# Single steps from a given state
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepCase:
    """One step on one segment from state (r, v) with inputs (g, s); s unused by Strom."""

    name: str
    r: list
    g: list
    v: list | None = None
    s: list | None = None
    params: dict = field(default_factory=dict)  # VGCParams or StromParams keywords
    why: str = ""

    def arrays(self):
        n = len(self.r)
        v = self.v if self.v is not None else [0.0] * n
        s = self.s if self.s is not None else [0.0] * n
        return tuple(np.array(a, np.float32).reshape(n) for a in (self.r, v, self.g, s))


VGC_EDGE_CASES = [
    StepCase("empty_segment", [], [], why="n = 0: an empty packet with E = 0"),
    StepCase("nothing_sent", [1.0, -2.0, 0.5], [0.0] * 3, [10.0] * 3, [1.0] * 3, why="no candidate"),
    StepCase(
        "everything_sent",
        [1.0, -2.0, 4.0, 0.75, -3.0],
        [0.25, 0.0, -1.0, 0.0, 0.5],
        why="v = s = 0: every nonzero element is a candidate",
    ),
    StepCase(
        "tie_at_threshold",
        [1.0, 3.0, -2.0, 2.0],
        [0.0] * 4,
        [0.5, 4.5, 2.0, 0.5],
        [0.0] * 4,
        {"alpha": 2.0},
        why="r*r == alpha*v exactly is not sent (the comparison is strict)",
    ),
    StepCase(
        "tie_at_threshold_alpha_rounded",
        [1.0, 1.0, 0.5],
        [0.0] * 3,
        [10.0, 9.999999, 0.0],
        [0.0] * 3,
        {"alpha": 0.1},
        why="alpha = 0.1 is rounded to float32 once; 1 > alpha32 * 10 decides",
    ),
    StepCase(
        "tau_tie",
        [1.0, ONE_MINUS, -1.0, 4.0],
        [0.0] * 4,
        params={"tau": 1.0},
        why="hybrid: |r| == tau is sent (>=), one ulp below is not",
    ),
    StepCase(
        "k_15_and_16",
        [1.0, 2.0**-15, -(2.0**-15), 2.0**-16, 2.0**-14],
        [0.0] * 5,
        why="k = 15 is sent, k = 16 stays in the residual",
    ),
    StepCase(
        "k_boundary_after_rounding",
        [1.0, 2.0**-16 * SQRT2, 2.0**-17 * SQRT2, 2.0**-16 * BELOW_SQRT2],
        [0.0] * 4,
        why="rounding up moves an element from k = 16 to k = 15",
    ),
    StepCase(
        "sqrt2_rounding",
        [SQRT2, BELOW_SQRT2, -SQRT2, 2 * SQRT2, 2 * BELOW_SQRT2, 1.5, 0.75],
        [0.0] * 7,
        why="mantissa 0x3504F3 rounds up, 0x3504F2 rounds down",
    ),
    StepCase(
        "subnormals",
        [F32_SUB, -F32_SUB, F32_TINY, -F32_TINY, 2.0**-130, 1.0],
        [0.0] * 6,
        [0.0, 0.0, 0.0, 0.0, F32_SUB, 0.0],
        [F32_SUB] * 6,
        {"alpha": 1e-30},
        why="subnormal r is never sent; subnormal s accumulates and decays",
    ),
    StepCase(
        "r_squared_underflow",
        [1e-20, 1e-23, -1e-20],
        [0.0] * 3,
        why="r*r underflowing to 0 does not compare greater than 0; 1e-40 (subnormal) does",
    ),
    StepCase(
        "r_squared_overflow",
        [1e19, 3e38, -F32_MAX, 1e19],
        [0.0] * 4,
        [1.0, F32_MAX, 1e38, F32_MAX],
        [0.0] * 4,
        why="r*r = inf compares greater, but not against alpha*v = inf",
    ),
    StepCase(
        "near_float32_max",
        [F32_MAX, -3e38, 2.0**127, 2.0**124],
        [0.0] * 4,
        why="exponent 255 is clamped to 254 (q = 2^127)",
    ),
    StepCase(
        "signed_zeros",
        [-0.0, -0.0, 0.0, 1.0],
        [-0.0, 0.0, -0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        why="-0.0 + -0.0 stays -0.0; -0.0 + 0.0 is +0.0",
    ),
    StepCase(
        "accumulate_rounding",
        [1.0, 16777216.0, -1.0],
        [2.0**-24, 1.0, 2.0**-23],
        [0.0] * 3,
        [0.0] * 3,
        {"alpha": 1e30},
        why="r + g rounds to nearest even; nothing is sent so r shows the sum",
    ),
    StepCase(
        "decay_held_and_reset_sent",
        [1.0, 0.01, 3.0],
        [0.0] * 3,
        [0.1, 1.0, 0.2],
        [0.1, 0.0, 0.3],
        {"zeta": 0.9},
        why="held elements decay by zeta32 (one multiply); sent elements get v = 0",
    ),
    StepCase("zeta_zero", [1.0, 0.01], [0.0, 0.0], [0.1, 1.0], [0.0, 0.5], {"zeta": 0.0}),
    StepCase(
        "reset_mode",
        [1.3, -2.7, 0.01],
        [0.0] * 3,
        [0.0, 0.0, 1.0],
        [0.0] * 3,
        {"residual": "reset"},
        why="reset: a sent element's r becomes +0.0",
    ),
    StepCase(
        "feedback_residual",
        [1.3, -2.7, 1.5, 3.0],
        [0.0] * 4,
        why="feedback: r - q is exact",
    ),
]

STROM_EDGE_CASES = [
    StepCase("empty_segment", [], [], params={"tau": 1.0}),
    StepCase(
        "tie_at_tau",
        [1.0, -1.0, ONE_MINUS, -ONE_MINUS, 2.5],
        [0.0] * 5,
        params={"tau": 1.0},
        why="|r| == tau is sent (>=), one ulp below is not",
    ),
    StepCase(
        "subtract_rounds",
        [16777216.0, 1.5, -3.0],
        [1.0, 0.0, 0.0],
        params={"tau": 1.0},
        why="r - tau is one rounded float32 subtraction",
    ),
    StepCase("subnormal_tau", [F32_SUB, 0.0, -F32_SUB], [0.0, 0.0, 0.0], params={"tau": F32_SUB}),
    StepCase("signed_zeros", [-0.0, -0.0, 0.5], [-0.0, 0.0, 0.0], params={"tau": 1.0}),
    StepCase("large_tau", [F32_MAX, -F32_MAX, 1.0], [0.0] * 3, params={"tau": 1e38}),
]


# --------------------------------------------------------------------------------------
# Messages written field by field (independent of the encoder under test)
# --------------------------------------------------------------------------------------


def raw_segment(
    segment_id: int,
    n: int,
    codec: int,
    param: int,
    words: list[int],
    *,
    count: int | None = None,
    reserved: bytes = b"\0\0\0",
) -> bytes:
    """One segment: u32 segment_id, u32 n, u8 codec, 3 reserved bytes, u32 param, u32 count, words."""
    count = len(words) if count is None else count
    head = struct.pack("<IIB3sII", segment_id, n, codec, reserved, param, count)
    return head + struct.pack(f"<{len(words)}I", *words)


def raw_message(
    segments: list[bytes],
    *,
    magic: bytes = b"VGCM",
    version: int = 1,
    reserved: int = 0,
    segment_count: int | None = None,
    trailing: bytes = b"",
    crc_xor: int = 0,
    cut: int = 0,
) -> bytes:
    """A message: header, segments, ``trailing`` extra bytes, then a correct CRC-32 (xor ``crc_xor``).

    ``cut`` drops that many bytes from the end of the body before the CRC is computed, so the
    message is truncated but its CRC is right.
    """
    count = len(segments) if segment_count is None else segment_count
    body = struct.pack("<4sHHI", magic, version, reserved, count) + b"".join(segments) + trailing
    if cut:
        body = body[:-cut]
    return body + struct.pack("<I", zlib.crc32(body) ^ crc_xor)


def vgc_word(index: int, sign: int, k: int) -> int:
    return index << 5 | sign << 4 | k


def strom_word(index: int, sign: int) -> int:
    return index << 1 | sign


def f32_bits(x: float) -> int:
    return int(np.float32(x).view(np.uint32))


TAU_HALF = f32_bits(0.5)

#: A valid three-segment message's segments (VGC_Q4, STROM, DENSE), used as the base.
VGC_SEG = (0, 100, 1, 130, [vgc_word(0, 0, 0), vgc_word(7, 1, 15), vgc_word(99, 0, 3)])
STROM_SEG = (1, 50, 2, TAU_HALF, [strom_word(2, 1), strom_word(49, 0)])
DENSE_SEG = (2, 3, 0, 0, [f32_bits(1.5), f32_bits(-0.0), f32_bits(2.0**-140)])
VALID_SIZES = [100, 50, 3]


def seg(spec, **kw) -> bytes:
    segment_id, n, codec, param, words = spec
    args = {"segment_id": segment_id, "n": n, "codec": codec, "param": param, "words": list(words)}
    extra = {k: kw.pop(k) for k in ("count", "reserved") if k in kw}
    args.update(kw)
    return raw_segment(args["segment_id"], args["n"], args["codec"], args["param"], args["words"], **extra)


def valid_message() -> bytes:
    return raw_message([seg(VGC_SEG), seg(STROM_SEG), seg(DENSE_SEG)])


def _with(vgc=None, strom=None, dense=None, **message_kw) -> bytes:
    """The base message with one segment replaced (and message options)."""
    return raw_message([vgc or seg(VGC_SEG), strom or seg(STROM_SEG), dense or seg(DENSE_SEG)], **message_kw)


_W = VGC_SEG[4]

#: name -> a malformed message (every other field valid, CRC correct unless the class is the CRC).
MALFORMED_MESSAGES: dict[str, bytes] = {
    "empty_input": b"",
    "shorter_than_header": b"VGCM\x01\x00",
    "wrong_magic": _with(magic=b"VGCm"),
    "wrong_version": _with(version=2),
    "header_reserved_nonzero": _with(reserved=1),
    "truncated_words": _with(cut=5),
    "truncated_segment_header": raw_message([seg(VGC_SEG), seg(STROM_SEG)[:12]]),
    "trailing_bytes": _with(trailing=b"\0\0\0\0"),
    "crc_mismatch": _with(crc_xor=1 << 7),
    "crc_missing": valid_message()[:-4],
    "segment_count_too_large": _with(segment_count=4),
    "segment_count_too_small": _with(segment_count=2),
    "word_count_too_large": _with(strom=seg(STROM_SEG, count=3)),
    "word_count_too_small": _with(vgc=seg(VGC_SEG, count=2)),
    "unknown_codec": _with(strom=seg(STROM_SEG, codec=3)),
    "segment_reserved_nonzero": _with(vgc=seg(VGC_SEG, reserved=b"\0\1\0")),
    "n_above_2_27": _with(vgc=seg(VGC_SEG, n=(1 << 27) + 1, words=[vgc_word(0, 0, 0)])),
    "duplicate_segment_id": _with(strom=seg(STROM_SEG, segment_id=0)),
    "vgc_index_equals_n": _with(vgc=seg(VGC_SEG, words=[_W[0], _W[1], vgc_word(100, 0, 3)])),
    "vgc_index_above_n": _with(vgc=seg(VGC_SEG, words=[_W[0], _W[1], vgc_word(1000, 0, 3)])),
    "vgc_indices_decreasing": _with(vgc=seg(VGC_SEG, words=[_W[0], _W[2], _W[1]])),
    "vgc_duplicate_index": _with(vgc=seg(VGC_SEG, words=[_W[0], vgc_word(7, 0, 1), _W[1], _W[2]])),
    "vgc_k_too_large": _with(vgc=seg(VGC_SEG, param=10, words=[vgc_word(0, 0, 0), vgc_word(7, 0, 10)])),
    "vgc_E_255": _with(vgc=seg(VGC_SEG, param=255)),
    "vgc_E_zero_with_words": _with(vgc=seg(VGC_SEG, param=0)),
    "vgc_E_nonzero_empty": _with(vgc=seg(VGC_SEG, words=[])),
    "vgc_param_reserved_bits": _with(vgc=seg(VGC_SEG, param=0x100 | 130)),
    "strom_index_equals_n": _with(strom=seg(STROM_SEG, words=[strom_word(2, 1), strom_word(50, 0)])),
    "strom_indices_decreasing": _with(strom=seg(STROM_SEG, words=[strom_word(49, 0), strom_word(2, 1)])),
    "strom_tau_zero": _with(strom=seg(STROM_SEG, param=0)),
    "strom_tau_negative": _with(strom=seg(STROM_SEG, param=f32_bits(-0.5))),
    "strom_tau_nan": _with(strom=seg(STROM_SEG, param=0x7FC00000)),
    "strom_tau_inf": _with(strom=seg(STROM_SEG, param=0x7F800000)),
    "dense_count_differs_from_n": _with(dense=seg(DENSE_SEG, n=4)),
    "dense_param_nonzero": _with(dense=seg(DENSE_SEG, param=1)),
    "dense_nan": _with(dense=seg(DENSE_SEG, words=[f32_bits(1.5), 0x7FC00000, 0])),
    "dense_inf": _with(dense=seg(DENSE_SEG, words=[0xFF800000, 0, 0])),
}


# --------------------------------------------------------------------------------------
# Aggregations where the order of the float32 additions shows
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AggregateCase:
    """P messages, each a list of (segment_id, n, codec, param, words) segments."""

    name: str
    ranks: list
    sizes: list
    why: str = ""

    def messages(self) -> list[bytes]:
        return [raw_message([raw_segment(*s) for s in rank]) for rank in self.ranks]


def _dense(segment_id: int, values: list[float]):
    return (segment_id, len(values), 0, 0, [f32_bits(x) for x in values])


AGGREGATE_EDGE_CASES = [
    AggregateCase(
        "rank_order_matters",
        [[_dense(0, [1.0, 2.0**-24])], [_dense(0, [2.0**-24, 2.0**-24])], [_dense(0, [2.0**-24, 1.0])]],
        [2],
        why="(1 + 2^-24) + 2^-24 = 1 but 2^-24 + (2^-24 + 1) = 1 + 2^-23: only rank order gives g_hat",
    ),
    AggregateCase(
        "rank_order_mixed_codecs",
        [
            [(0, 4, 1, 151, [vgc_word(0, 0, 0), vgc_word(3, 1, 0)])],  # +-2^24
            [(0, 4, 2, f32_bits(1.0), [strom_word(0, 0), strom_word(1, 0), strom_word(3, 0)])],
            [(0, 4, 1, 127, [vgc_word(0, 0, 0), vgc_word(1, 1, 0), vgc_word(3, 0, 0)])],  # +-1
            [_dense(0, [-(2.0**24), 0.0, 0.0, 2.0**24])],
        ],
        [4],
        why="large and small values from VGC, STROM and DENSE packets: every rank order differs",
    ),
    AggregateCase(
        "negative_zero_never_survives",
        [[_dense(0, [-0.0, -0.0, 1.0])], [_dense(0, [-0.0, 0.0, -1.0])]],
        [3],
        why="acc starts at +0.0, so -0.0 + -0.0 sums to +0.0; 1 + -1 = +0.0",
    ),
    AggregateCase(
        "empty_packets_and_segments",
        [
            [(0, 0, 1, 0, []), (1, 5, 1, 0, []), (2, 5, 2, f32_bits(0.25), [])],
            [(2, 5, 2, f32_bits(0.25), [strom_word(4, 1)]), (0, 0, 0, 0, []), (1, 5, 1, 0, [])],
        ],
        [0, 5, 5],
        why="empty packets, an empty segment, and segments in any order within a message",
    ),
    AggregateCase(
        "divide_by_P",
        [[_dense(0, [5.0, 7.0, F32_MAX])], [_dense(0, [0.0, 0.0, 0.0])], [_dense(0, [0.0, 0.0, 0.0])]],
        [3],
        why="g_hat = acc / float32(P), one rounded division (not a multiplication by 1/P)",
    ),
    AggregateCase("one_rank", [[_dense(0, [0.1, -0.2])]], [2]),
]

#: name -> (messages, sizes) that decode_accumulate must reject (layout errors and bad messages).
BAD_AGGREGATIONS = {
    "missing_segment": ([valid_message(), raw_message([seg(VGC_SEG), seg(STROM_SEG)])], VALID_SIZES),
    "unexpected_segment": ([valid_message(), valid_message()], [100, 50]),
    "wrong_n": ([valid_message(), valid_message()], [100, 51, 3]),
    "no_messages": ([], VALID_SIZES),
    "malformed_last_rank": (
        [valid_message(), valid_message(), MALFORMED_MESSAGES["crc_mismatch"]],
        VALID_SIZES,
    ),
    "malformed_middle_rank": (
        [valid_message(), MALFORMED_MESSAGES["vgc_indices_decreasing"], valid_message()],
        VALID_SIZES,
    ),
}
