"""Quantization to powers of two and the packed words (docs/algorithm.md section 3, docs/format.md codecs).

Everything here is integer arithmetic on float32 bit patterns, so every backend gets
exactly the same answer.

For x = |r| with float32 bits ``ef`` (biased exponent, bits 30..23) and ``mf``
(mantissa, bits 22..0)::

    e = ef + 1   if mf >= SQRT2_MANTISSA   else ef      (nearest power of two in log2)
    e = min(e, 254)                                      (2^128 is not a float32)
    q = sign(r) * 2^(e - 127)                            (bits: sign << 31 | e << 23)

``ef == 0`` (zero or subnormal) is not sendable. Words:

* VGC_Q4: ``index << 5 | sign << 4 | k`` with ``k = E - e`` in 0..15.
* STROM:  ``index << 1 | sign``.
"""

from __future__ import annotations

import numpy as np

#: Mantissa field of float32(sqrt(2)); |r| with this mantissa or more rounds up.
SQRT2_MANTISSA = 0x3504F3
#: Largest exponent a sent value may have (2^127); e = 255 would be infinity.
MAX_EXPONENT = 254
#: Largest k of the 4-bit exponent code.
MAX_K = 15

EXPONENT_MASK = np.uint32(0xFF)
MANTISSA_MASK = np.uint32(0x7FFFFF)
VGC_INDEX_SHIFT = 5
VGC_SIGN_BIT = 4
VGC_K_MASK = np.uint32(0xF)
STROM_INDEX_SHIFT = 1


def float_bits(x: np.ndarray) -> np.ndarray:
    """The uint32 bit patterns of a float32 array (a view, no copy)."""
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def rounded_exponent(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rounded biased exponent of |r| and whether r is sendable at all.

    Parameters
    ----------
    r : float32[n]

    Returns
    -------
    e : uint32[n]
        ``ef + (mf >= SQRT2_MANTISSA)``, clamped to 254.
    normal : bool[n]
        ``ef != 0``: False for zeros and subnormals, which are never sent.
    """
    bits = float_bits(r)  # uint32[n]
    ef = (bits >> np.uint32(23)) & EXPONENT_MASK  # uint32[n]
    mf = bits & MANTISSA_MASK  # uint32[n]
    e = ef + (mf >= SQRT2_MANTISSA).astype(np.uint32)
    e = np.minimum(e, np.uint32(MAX_EXPONENT))
    return e, ef != 0


def sign_bits(r: np.ndarray) -> np.ndarray:
    """uint32 sign bit of each float32 (1 = negative)."""
    return float_bits(r) >> np.uint32(31)


def power_of_two(sign: np.ndarray, e: np.ndarray) -> np.ndarray:
    """float32 values ``sign * 2^(e - 127)``: the bits ``sign << 31 | e << 23``."""
    bits = (np.asarray(sign, np.uint32) << np.uint32(31)) | (np.asarray(e, np.uint32) << np.uint32(23))
    return bits.view(np.float32)


def pack_vgc_words(index: np.ndarray, sign: np.ndarray, k: np.ndarray) -> np.ndarray:
    """VGC_Q4 words ``index << 5 | sign << 4 | k`` (uint32)."""
    index = np.asarray(index, np.uint32)
    return (
        (index << np.uint32(VGC_INDEX_SHIFT))
        | (np.asarray(sign, np.uint32) << np.uint32(VGC_SIGN_BIT))
        | np.asarray(k, np.uint32)
    )


def unpack_vgc_words(words: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split VGC_Q4 words into (index, sign, k), each uint32."""
    words = np.asarray(words, np.uint32)
    index = words >> np.uint32(VGC_INDEX_SHIFT)
    sign = (words >> np.uint32(VGC_SIGN_BIT)) & np.uint32(1)
    k = words & VGC_K_MASK
    return index, sign, k


def vgc_values(E: int, sign: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Decoded VGC_Q4 values: float32 with bits ``sign << 31 | (E - k) << 23``.

    The caller guarantees ``E - k >= 1`` (the decoder rejects anything else).
    """
    return power_of_two(sign, np.uint32(E) - np.asarray(k, np.uint32))


def pack_strom_words(index: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """STROM words ``index << 1 | sign`` (uint32)."""
    return (np.asarray(index, np.uint32) << np.uint32(STROM_INDEX_SHIFT)) | np.asarray(sign, np.uint32)


def unpack_strom_words(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split STROM words into (index, sign), each uint32."""
    words = np.asarray(words, np.uint32)
    return words >> np.uint32(STROM_INDEX_SHIFT), words & np.uint32(1)


def strom_values(tau: np.float32, sign: np.ndarray) -> np.ndarray:
    """Decoded STROM values ``sign * tau`` (float32; only the sign bit is changed)."""
    tau_bits = np.float32(tau).view(np.uint32)
    return ((np.asarray(sign, np.uint32) << np.uint32(31)) | tau_bits).view(np.float32)
