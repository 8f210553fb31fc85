"""One segment's packet: what a worker sends for one segment in one step.

A packet is codec-independent data: the segment id, its length n, the codec, the
codec's one parameter, and a vector of little-endian uint32 words. The words mean,
per codec (docs/algorithm.md sections 3-4; bit tables in docs/format.md):

========  =====================================  ==================================
codec     param                                  words
========  =====================================  ==================================
VGC_Q4    E, the segment's largest exponent       index << 5 | sign << 4 | k, sorted
          (1..254; 0 for an empty packet)         by index; value sign * 2^(E-k-127)
STROM     bits of float32 tau (> 0, finite)       index << 1 | sign, sorted by index;
                                                  value sign * tau
DENSE     0                                       the n float32 values' bit patterns
========  =====================================  ==================================

Packets compare equal when every field and every word is equal (bit patterns, so a
DENSE packet holding -0.0 differs from one holding +0.0).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from vgc_ref import quantize

#: Largest segment length (docs/algorithm.md section 1): indices fit the 27-bit word field.
MAX_SEGMENT_LEN = 1 << 27


class Codec(enum.IntEnum):
    """Codec of a packet; the value is the codec byte of the wire format."""

    DENSE = 0  #: uncompressed float32 baseline
    VGC_Q4 = 1  #: variance-based criterion, powers of two with a 4-bit exponent code
    STROM = 2  #: Strom's fixed threshold tau, values +-tau


@dataclass(frozen=True, eq=False)
class Packet:
    """One segment's packet.

    Parameters
    ----------
    segment_id : int
        Id of the segment (0 .. 2^32 - 1), unique within a message.
    n : int
        Length of the segment (0 .. 2^27).
    codec : Codec
        How ``param`` and ``words`` are to be read.
    param : int
        The codec parameter as its raw uint32 field: E for VGC_Q4, the bit pattern of
        float32 tau for STROM, 0 for DENSE.
    words : numpy.ndarray
        uint32[count], the packed words (see the module docstring).
    """

    segment_id: int
    n: int
    codec: Codec
    param: int
    words: np.ndarray  # uint32[count]

    def __post_init__(self) -> None:
        words = np.ascontiguousarray(self.words, dtype=np.uint32)
        words.setflags(write=False)
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "codec", Codec(self.codec))

    @property
    def E(self) -> int:  # noqa: N802 -- the paper's symbol
        """The segment's largest exponent (VGC_Q4 only)."""
        if self.codec != Codec.VGC_Q4:
            raise AttributeError(f"E is defined for VGC_Q4 packets, not {self.codec.name}")
        return self.param

    @property
    def tau(self) -> np.float32:
        """The threshold tau as float32 (STROM only)."""
        if self.codec != Codec.STROM:
            raise AttributeError(f"tau is defined for STROM packets, not {self.codec.name}")
        return np.uint32(self.param).view(np.float32)

    @property
    def count(self) -> int:
        """Number of words."""
        return int(self.words.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Packet):
            return NotImplemented
        return (
            self.segment_id == other.segment_id
            and self.n == other.n
            and self.codec == other.codec
            and self.param == other.param
            and np.array_equal(self.words, other.words)
        )

    def __hash__(self) -> int:
        return hash((self.segment_id, self.n, int(self.codec), self.param, self.words.tobytes()))

    def __repr__(self) -> str:
        return (
            f"Packet(segment_id={self.segment_id}, n={self.n}, codec={self.codec.name}, "
            f"param={self.param:#x}, count={self.count})"
        )


def packet_entries(packet: Packet) -> tuple[np.ndarray, np.ndarray]:
    """The (index, value) pairs a packet carries: int64[count] and float32[count].

    The packet is assumed valid (built by a step function or returned by the decoder).
    """
    if packet.codec == Codec.DENSE:
        return np.arange(packet.n, dtype=np.int64), packet.words.view(np.float32)
    if packet.codec == Codec.VGC_Q4:
        index, sign, k = quantize.unpack_vgc_words(packet.words)
        return index.astype(np.int64), quantize.vgc_values(packet.param, sign, k)
    index, sign = quantize.unpack_strom_words(packet.words)
    return index.astype(np.int64), quantize.strom_values(packet.tau, sign)
