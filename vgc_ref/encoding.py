"""The message container: one worker's packets for one step as bytes (docs/format.md).

The byte tables, the decoder's checks in order, and the golden files are in
docs/format.md; this module follows it field by field. In short (all little-endian,
unsigned)::

    message header   12 bytes   magic "VGCM", u16 version = 1, u16 reserved = 0,
                                u32 segment_count S
    S segments       20 bytes   u32 segment_id, u32 n, u8 codec, 3 bytes reserved = 0,
                                u32 param, u32 count
                     + count x u32 words
    trailer           4 bytes   u32 CRC-32 (zlib.crc32) of every byte before it

The encoding is canonical: a list of valid packets has exactly one byte string, and
``encode_message(decode_message(b)) == b`` for every ``b`` the decoder accepts.

The decoder checks a message in three passes and reports the first problem as a
:class:`~vgc_ref.errors.FormatError` carrying the field's name and byte offset:

1. framing -- every field before the trailer fits, magic, version, header reserved,
   and exactly 4 bytes (the CRC) left after the last segment;
2. the CRC-32;
3. content, segment by segment -- the rules :func:`validate_packet` also applies to
   packets before they are encoded, plus the ones only bytes can break (unknown codec,
   nonzero reserved bytes, duplicate segment ids).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from vgc_ref import quantize
from vgc_ref.errors import FormatError, InputError
from vgc_ref.packet import MAX_SEGMENT_LEN, Codec, Packet

MAGIC = b"VGCM"
VERSION = 1

#: Message header: magic, version, reserved, segment_count.
HEADER = struct.Struct("<4sHHI")
#: Segment header: segment_id, n, codec, reserved, param, count.
SEGMENT_HEADER = struct.Struct("<IIB3sII")
#: Trailer: the CRC-32 of every byte before it.
TRAILER = struct.Struct("<I")
WORD_SIZE = 4

#: (field, offset from the segment's start, width) of the segment header, as in the byte table.
SEGMENT_FIELDS = (
    ("segment_id", 0, 4),
    ("n", 4, 4),
    ("codec", 8, 1),
    ("reserved", 9, 3),
    ("param", 12, 4),
    ("count", 16, 4),
)
SEGMENT_OFFSET = {name: offset for name, offset, _ in SEGMENT_FIELDS}

U32_MAX = 0xFFFFFFFF
#: VGC_Q4 param: E is bits 7..0; bits 31..8 are reserved.
VGC_E_MASK = 0xFF
#: E = 255 would be the exponent of infinity.
VGC_E_MAX = quantize.MAX_EXPONENT
FLOAT32_EXPONENT_ALL_ONES = 0x7F800000  # exponent field of inf and NaN


# --------------------------------------------------------------------------------------
# Content rules shared by the encoder and the decoder
# --------------------------------------------------------------------------------------


class _Problem(NamedTuple):
    """The first content rule a packet breaks.

    ``field`` is a byte-table name ("n", "param", "count" or "words"); ``word`` is the
    index of the first offending word when ``field`` is "words", else None.
    """

    field: str
    word: int | None
    reason: str


def _first(mask: np.ndarray) -> int:
    """Index of the first True in a boolean array (which has one)."""
    return int(np.argmax(mask))


def _tau_text(param: int) -> str:
    return f"param {param:#010x} (tau = {float(np.uint32(param).view(np.float32))!r})"


def _n_problem(n: int) -> _Problem | None:
    """The segment length rule: 0 <= n <= 2^27 (n is a u32, so only the upper bound)."""
    if n > MAX_SEGMENT_LEN:
        return _Problem("n", None, f"n = {n} exceeds the largest segment length 2^27 = {MAX_SEGMENT_LEN}")
    return None


def _index_problem(index: np.ndarray, words: np.ndarray, n: int) -> _Problem | None:
    """Indices (uint32[count]) must be < n and strictly increasing."""
    too_big = index >= n  # bool[count]
    if too_big.any():
        i = _first(too_big)
        return _Problem("words", i, f"word {i} = {int(words[i]):#010x}: index {int(index[i])} >= n = {n}")
    not_increasing = np.diff(index.astype(np.int64)) <= 0  # bool[count - 1]
    if not_increasing.any():
        i = _first(not_increasing) + 1
        return _Problem(
            "words",
            i,
            f"word {i} = {int(words[i]):#010x}: index {int(index[i])} is not greater than the previous "
            f"word's index {int(index[i - 1])} (indices must be strictly increasing)",
        )
    return None


def _payload_problem(codec: Codec, n: int, param: int, words: np.ndarray) -> _Problem | None:
    """The first rule that (param, count, words) break for this codec, or None.

    ``words`` is uint32[count]; ``n`` already satisfies :func:`_n_problem`. Checked in
    this order: param, count, then the words (each rule over all words before the next
    rule; the first word that breaks it is reported).
    """
    count = int(words.size)

    if codec == Codec.VGC_Q4:
        E = param & VGC_E_MASK
        if param > VGC_E_MASK:
            return _Problem("param", None, f"param {param:#010x}: bits 31..8 are reserved and must be 0")
        if E > VGC_E_MAX:
            return _Problem(
                "param", None, f"E = {E} is out of range (1..{VGC_E_MAX}, or 0 for an empty packet)"
            )
        if E == 0 and count > 0:
            return _Problem("param", None, f"E = 0 with count = {count} (E = 0 only for an empty packet)")
        if E > 0 and count == 0:
            return _Problem("param", None, f"E = {E} with count = 0 (an empty packet has E = 0)")
        if count > n:
            return _Problem("count", None, f"count = {count} exceeds n = {n}")
        index, _, k = quantize.unpack_vgc_words(words)  # uint32[count] each
        problem = _index_problem(index, words, n)
        if problem is not None:
            return problem
        too_small = k >= E  # E - k < 1: exponent 0 (subnormal) or negative
        if too_small.any():
            i = _first(too_small)
            return _Problem(
                "words",
                i,
                f"word {i} = {int(words[i]):#010x}: k = {int(k[i])} with E = {E} (E - k must be >= 1)",
            )
        if count > 0 and not (k == 0).any():
            # E is the largest exponent sent, so some word has k = 0: this keeps the
            # encoding of a set of sent values unique.
            return _Problem("param", None, f"E = {E} is not the largest exponent sent (no word has k = 0)")
        return None

    if codec == Codec.STROM:
        tau = np.uint32(param).view(np.float32)
        if not (np.isfinite(tau) and tau > 0):
            return _Problem("param", None, f"{_tau_text(param)}: tau must be finite and > 0")
        if count > n:
            return _Problem("count", None, f"count = {count} exceeds n = {n}")
        index, _ = quantize.unpack_strom_words(words)  # uint32[count]
        return _index_problem(index, words, n)

    # DENSE
    if param != 0:
        return _Problem("param", None, f"param {param:#010x}: must be 0 for DENSE")
    if count != n:
        return _Problem("count", None, f"count = {count} differs from n = {n} (DENSE sends every element)")
    non_finite = (words & np.uint32(FLOAT32_EXPONENT_ALL_ONES)) == FLOAT32_EXPONENT_ALL_ONES  # bool[n]
    if non_finite.any():
        i = _first(non_finite)
        value = float(words[i : i + 1].view(np.float32)[0])
        return _Problem("words", i, f"word {i} = {int(words[i]):#010x}: value {value!r} is not finite")
    return None


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_packet(packet: object, name: str) -> None:
    """Raise InputError for the first rule ``packet`` breaks; ``name`` prefixes the field."""
    if not isinstance(packet, Packet):
        raise InputError(name, type(packet).__name__, "expected a vgc_ref.packet.Packet")
    for field in ("segment_id", "n", "param"):
        value = getattr(packet, field)
        if not _is_int(value) or not 0 <= value <= U32_MAX:
            raise InputError(f"{name}.{field}", repr(value), "expected an integer in 0 .. 2^32 - 1")
    if packet.words.ndim != 1:
        raise InputError(f"{name}.words", f"shape {packet.words.shape}", "expected a 1-D uint32 array")
    n, param = int(packet.n), int(packet.param)
    problem = _n_problem(n) or _payload_problem(packet.codec, n, param, packet.words)
    if problem is None:
        return
    if problem.word is None:  # "n", "param" or "count": the Packet attribute of that name
        raise InputError(f"{name}.{problem.field}", getattr(packet, problem.field), problem.reason)
    word = int(packet.words[problem.word])
    raise InputError(f"{name}.words[{problem.word}]", f"{word:#010x}", problem.reason)


def validate_packet(packet: Packet) -> None:
    """Check that a packet may be put in a message.

    The same content rules the decoder applies (docs/format.md, "What a decoder
    rejects", step 3): 0 <= n <= 2^27; per codec, param and count in range; indices
    below n and strictly increasing; E - k >= 1 (VGC_Q4); finite values (DENSE).

    Raises
    ------
    InputError
        Naming the field (``packet.param``, ``packet.words[3]``, ...) and its value.
    """
    _check_packet(packet, "packet")


# --------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------


def message_length(packets: Sequence[Packet]) -> int:
    """Length in bytes of the message holding ``packets``, without encoding it.

    ``12 + sum(20 + 4 * count) + 4``. The packets are not validated.
    """
    return HEADER.size + sum(SEGMENT_HEADER.size + WORD_SIZE * p.count for p in packets) + TRAILER.size


def encode_message(packets: Sequence[Packet]) -> bytes:
    """The message holding ``packets``, in the order given.

    Parameters
    ----------
    packets : sequence of Packet
        One per segment; segment ids must be unique. May be empty.

    Returns
    -------
    bytes
        ``message_length(packets)`` bytes: header, segments in list order, CRC-32.

    Raises
    ------
    InputError
        If a packet breaks a content rule (see :func:`validate_packet`) or repeats a
        segment id; the name gives its position, e.g. ``packets[2].words[5]``.
    """
    if isinstance(packets, (str, bytes, bytearray, memoryview, Packet)) or not isinstance(packets, Iterable):
        raise InputError("packets", type(packets).__name__, "expected a sequence of Packet")
    packets = list(packets)
    seen: dict[int, int] = {}  # segment_id -> position
    for position, packet in enumerate(packets):
        _check_packet(packet, f"packets[{position}]")
        segment_id = int(packet.segment_id)
        if segment_id in seen:
            raise InputError(
                f"packets[{position}].segment_id",
                segment_id,
                f"duplicate segment id (packets[{seen[segment_id]}] has it too)",
            )
        seen[segment_id] = position
    return assemble_message(packets)


def assemble_message(packets: list[Packet]) -> bytes:
    """The bytes of the message holding ``packets``, which :func:`encode_message` has
    checked (or a backend's twin checked by the same rules): header, each segment's
    header and words, CRC-32. Nothing is validated here."""
    parts = [HEADER.pack(MAGIC, VERSION, 0, len(packets))]
    for packet in packets:
        parts.append(
            SEGMENT_HEADER.pack(
                int(packet.segment_id),
                int(packet.n),
                int(packet.codec),
                bytes(3),
                int(packet.param),
                packet.count,
            )
        )
        parts.append(packet.words.astype("<u4", copy=False).tobytes())
    body = b"".join(parts)
    return body + TRAILER.pack(zlib.crc32(body))


# --------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------


class _Segment(NamedTuple):
    """One segment header as read by the framing pass; ``offset`` is where it starts."""

    offset: int
    segment_id: int
    n: int
    codec: int
    reserved: bytes
    param: int
    count: int

    @property
    def words_offset(self) -> int:
        return self.offset + SEGMENT_HEADER.size


def _check_fits(field: str, offset: int, width: int, limit: int, length: int) -> None:
    """Raise a truncation FormatError unless bytes offset .. offset + width end by ``limit``."""
    if offset + width > limit:
        raise FormatError(
            field,
            offset,
            f"truncated: the field needs bytes {offset}..{offset + width - 1} but the message is "
            f"{length} bytes and its last 4 are the CRC-32",
        )


def _read_frame(buf: bytes) -> list[_Segment]:
    """Pass 1: message header and segment headers; every field must end by len - 4."""
    length = len(buf)
    limit = length - TRAILER.size  # the last 4 bytes are always the CRC

    _check_fits("magic", 0, 4, limit, length)
    if buf[0:4] != MAGIC:
        raise FormatError("magic", 0, f"expected {MAGIC!r}, found {buf[0:4]!r}")
    _check_fits("version", 4, 2, limit, length)
    (version,) = struct.unpack_from("<H", buf, 4)
    if version != VERSION:
        raise FormatError("version", 4, f"version {version} is not supported (expected {VERSION})")
    _check_fits("reserved", 6, 2, limit, length)
    (reserved,) = struct.unpack_from("<H", buf, 6)
    if reserved != 0:
        raise FormatError("reserved", 6, f"reserved field is {reserved:#06x}, must be 0")
    _check_fits("segment_count", 8, 4, limit, length)
    (segment_count,) = struct.unpack_from("<I", buf, 8)

    segments = []
    offset = HEADER.size
    for _ in range(segment_count):  # each pass consumes >= 20 bytes, so a huge S bails out quickly
        for field, field_offset, width in SEGMENT_FIELDS:
            _check_fits(field, offset + field_offset, width, limit, length)
        segment = _Segment(offset, *SEGMENT_HEADER.unpack_from(buf, offset))
        _check_fits("words", segment.words_offset, WORD_SIZE * segment.count, limit, length)
        segments.append(segment)
        offset = segment.words_offset + WORD_SIZE * segment.count

    # Every field above ended by ``limit``, so at least the 4 CRC bytes remain.
    if offset < limit:
        raise FormatError(
            "crc32",
            offset,
            f"trailing bytes: the last segment ends at byte {offset}, leaving {length - offset} bytes "
            f"where only the 4-byte CRC-32 belongs",
        )
    return segments


def _check_crc(buf: bytes) -> None:
    """Pass 2: the trailer holds the CRC-32 of every byte before it."""
    offset = len(buf) - TRAILER.size
    (stored,) = TRAILER.unpack_from(buf, offset)
    computed = zlib.crc32(buf[:offset])
    if stored != computed:
        raise FormatError(
            "crc32", offset, f"CRC-32 mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )


def _check_segment(buf: bytes, segment: _Segment, seen: dict[int, int]) -> Packet:
    """Pass 3 for one segment: its content rules; returns its packet."""
    start = segment.offset

    def fail(problem: _Problem) -> FormatError:
        if problem.word is None:
            return FormatError(problem.field, start + SEGMENT_OFFSET[problem.field], problem.reason)
        return FormatError(problem.field, segment.words_offset + WORD_SIZE * problem.word, problem.reason)

    problem = _n_problem(segment.n)
    if problem is not None:
        raise fail(problem)
    if segment.codec not in {c.value for c in Codec}:
        raise FormatError(
            "codec", start + SEGMENT_OFFSET["codec"], f"unknown codec {segment.codec} (known: 0, 1, 2)"
        )
    if segment.reserved != bytes(3):
        raise FormatError(
            "reserved",
            start + SEGMENT_OFFSET["reserved"],
            f"reserved bytes are {segment.reserved.hex()}, must be 0",
        )
    if segment.segment_id in seen:
        first = seen[segment.segment_id]
        raise FormatError(
            "segment_id",
            start,
            f"duplicate segment id {segment.segment_id} (the segment at byte {first} has it)",
        )
    seen[segment.segment_id] = start

    # A read-only view of the message bytes; uint32 in native byte order.
    words = np.frombuffer(buf, dtype="<u4", count=segment.count, offset=segment.words_offset)
    words = words.astype(np.uint32, copy=False)  # uint32[count]
    codec = Codec(segment.codec)
    problem = _payload_problem(codec, segment.n, segment.param, words)
    if problem is not None:
        raise fail(problem)
    return Packet(segment.segment_id, segment.n, codec, segment.param, words)


def decode_message(data: bytes | bytearray | memoryview) -> list[Packet]:
    """The packets of a message, in message order.

    Parameters
    ----------
    data : bytes, bytearray or memoryview
        The whole message. It is copied once and never modified.

    Returns
    -------
    list of Packet
        New packets; their ``words`` are read-only uint32 arrays.

    Raises
    ------
    FormatError
        For the first problem found, in the order of docs/format.md ("What a decoder
        rejects"), with the field's name and byte offset.
    InputError
        If ``data`` is not a bytes-like object.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):  # docs/conformance.md: these three only
        raise InputError("data", type(data).__name__, "expected bytes, bytearray or memoryview")
    buf = memoryview(data).tobytes()  # a memoryview is read as its bytes, in C order
    segments = _read_frame(buf)
    _check_crc(buf)
    seen: dict[int, int] = {}  # segment_id -> byte offset of its segment
    return [_check_segment(buf, segment, seen) for segment in segments]
