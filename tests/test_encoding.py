"""The message container (docs/format.md): golden files, round trips, rejection.

Malformed messages are built by patching one field of a valid message and recomputing the
CRC-32, so that the check under test -- not the CRC -- is what fires; each test names the
FormatError's field and byte offset.
"""

from __future__ import annotations

import array
import importlib.util
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vgc_ref.encoding import decode_message, encode_message, message_length, validate_packet
from vgc_ref.errors import FormatError, InputError
from vgc_ref.packet import MAX_SEGMENT_LEN, Codec, Packet

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_NAMES = sorted(p.stem for p in GOLDEN.glob("*.bin"))

U32_MAX = 2**32 - 1
HEADER = 12  # message header bytes; the first segment starts here
SEGMENT = 20  # segment header bytes
# Offsets of the first segment's fields.
SEG_ID, SEG_N, SEG_CODEC, SEG_RESERVED, SEG_PARAM, SEG_COUNT, SEG_WORDS = 12, 16, 20, 21, 24, 28, 32


def f32_bits(x: float) -> int:
    return int(np.float32(x).view(np.uint32))


def vgc(index: int, sign: int, k: int) -> int:
    return index << 5 | sign << 4 | k


def strom(index: int, sign: int) -> int:
    return index << 1 | sign


VGC_WORDS = (vgc(2, 0, 0), vgc(10, 1, 4), vgc(50, 0, 2))  # indices 2, 10, 50
STROM_WORDS = (strom(2, 0), strom(10, 1), strom(50, 0))


def vgc_q4_example(segment_id=3, n=100, E=5, words=VGC_WORDS):
    return Packet(segment_id, n, Codec.VGC_Q4, E, np.array(words, np.uint32))


def strom_example(segment_id=3, n=100, tau=0.5, words=STROM_WORDS):
    return Packet(segment_id, n, Codec.STROM, f32_bits(tau), np.array(words, np.uint32))


def dense_example(segment_id=3, values=(1.0, -0.0, 1e-45, -2.5)):
    bits = np.array(values, np.float32).view(np.uint32)
    return Packet(segment_id, bits.size, Codec.DENSE, 0, bits)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def patched(message: bytes, offset: int, fmt: str, value) -> bytes:
    """``message`` with one field overwritten (struct format ``fmt``) and its CRC recomputed."""
    body = bytearray(message[:-4])
    struct.pack_into(fmt, body, offset, value)
    return with_crc(bytes(body))


def assert_rejected(message: bytes, field: str, offset: int) -> FormatError:
    with pytest.raises(FormatError) as info:
        decode_message(message)
    assert type(info.value) is FormatError
    assert (info.value.field, info.value.offset) == (field, offset), str(info.value)
    assert field in str(info.value) and str(offset) in str(info.value)
    return info.value


def load_json_packets(path: Path) -> list[Packet]:
    return [
        Packet(p["segment_id"], p["n"], Codec[p["codec"]], p["param"], np.array(p["words"], np.uint32))
        for p in json.loads(path.read_text())
    ]


# --------------------------------------------------------------------------------------
# Golden files
# --------------------------------------------------------------------------------------


def test_golden_files_are_present():
    """The golden set covers the cases docs/format.md lists."""
    assert set(GOLDEN_NAMES) >= {
        "empty_message",
        "vgc_q4",
        "vgc_empty",
        "strom",
        "dense",
        "zero_length",
        "vgc_max_index",
        "multi_segment",
    }


def test_golden_files_match_their_script():
    """make_golden.py (check mode) finds the files on disk equal to its literals."""
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    make_golden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_golden)
    assert make_golden.differences() == []


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden_decode(name):
    """decode(file) gives exactly the packets of the JSON, with read-only words."""
    packets = decode_message((GOLDEN / f"{name}.bin").read_bytes())
    assert packets == load_json_packets(GOLDEN / f"{name}.json")
    for packet in packets:
        assert isinstance(packet.codec, Codec)
        assert packet.words.dtype == np.uint32 and not packet.words.flags.writeable


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_golden_encode(name):
    """encode(JSON packets) is the file, byte for byte; message_length agrees."""
    packets = load_json_packets(GOLDEN / f"{name}.json")
    data = (GOLDEN / f"{name}.bin").read_bytes()
    assert encode_message(packets) == data
    assert message_length(packets) == len(data)


def test_golden_values():
    """Spot checks of what the golden words mean, straight from docs/format.md's VGC_Q4 and STROM codecs."""
    (vgc_q4,) = load_json_packets(GOLDEN / "vgc_q4.json")
    assert vgc_q4.E == 130
    assert vgc_q4.words[0] == vgc(0, 0, 0) and vgc_q4.words[-1] == vgc(999, 1, 15)
    (max_index,) = load_json_packets(GOLDEN / "vgc_max_index.json")
    assert max_index.n == 2**27 and max_index.words[-1] == 0xFFFFFFF0
    (dense,) = load_json_packets(GOLDEN / "dense.json")
    values = dense.words.view(np.float32)
    assert np.signbit(values[1]) and values[1] == 0.0
    assert values[3] == np.float32(1e-45)
    assert len((GOLDEN / "empty_message.bin").read_bytes()) == 16


# --------------------------------------------------------------------------------------
# Hypothesis strategies: valid packets of every codec
# --------------------------------------------------------------------------------------

segment_lengths = st.one_of(
    st.integers(0, 64),
    st.sampled_from([MAX_SEGMENT_LEN, MAX_SEGMENT_LEN - 1, 1000]),
    st.integers(0, MAX_SEGMENT_LEN),
)


@st.composite
def sorted_indices(draw, n, max_count=24):
    """Strictly increasing indices below n."""
    if n == 0:
        return []
    chosen = draw(st.sets(st.integers(0, n - 1), max_size=min(n, max_count)), label="indices")
    if n > 1 and draw(st.booleans(), label="include the last index"):
        chosen.add(n - 1)
    return sorted(chosen)


@st.composite
def vgc_packets(draw, segment_id):
    n = draw(segment_lengths, label="n")
    index = draw(sorted_indices(n))
    if not index:
        return Packet(segment_id, n, Codec.VGC_Q4, 0, np.zeros(0, np.uint32))
    E = draw(st.one_of(st.integers(1, 254), st.sampled_from([1, 15, 16, 254])), label="E")
    count = len(index)
    sign = draw(st.lists(st.integers(0, 1), min_size=count, max_size=count), label="sign")
    k = draw(st.lists(st.integers(0, min(15, E - 1)), min_size=count, max_size=count), label="k")
    if count:
        k[draw(st.integers(0, count - 1), label="word with k = 0")] = 0  # E is the largest exponent
    words = [vgc(i, s, kk) for i, s, kk in zip(index, sign, k)]
    return Packet(segment_id, n, Codec.VGC_Q4, E, np.array(words, np.uint32))


@st.composite
def strom_packets(draw, segment_id):
    n = draw(segment_lengths, label="n")
    index = draw(sorted_indices(n))
    # Positive finite float32 bit patterns: 0x00000001 (subnormal) .. 0x7F7FFFFF (largest).
    tau_bits = draw(
        st.one_of(st.integers(1, 0x7F7FFFFF), st.sampled_from([1, f32_bits(1.0), 0x7F7FFFFF])),
        label="tau bits",
    )
    sign = draw(st.lists(st.integers(0, 1), min_size=len(index), max_size=len(index)), label="sign")
    words = [strom(i, s) for i, s in zip(index, sign)]
    return Packet(segment_id, n, Codec.STROM, tau_bits, np.array(words, np.uint32))


finite_f32_bits = st.one_of(
    st.integers(0, 0x7F7FFFFF),  # +0.0 .. largest positive
    st.integers(0x80000000, 0xFF7FFFFF),  # -0.0 .. most negative
    st.sampled_from([0x80000000, 0x00000001, 0x807FFFFF, 0x7F7FFFFF]),
)


@st.composite
def dense_packets(draw, segment_id):
    words = draw(st.lists(finite_f32_bits, max_size=32), label="value bits")
    return Packet(segment_id, len(words), Codec.DENSE, 0, np.array(words, np.uint32))


@st.composite
def packet_lists(draw, max_segments=6):
    """Valid packets with unique segment ids, in any order."""
    ids = draw(
        st.lists(st.one_of(st.integers(0, 20), st.integers(0, U32_MAX)), unique=True, max_size=max_segments),
        label="segment ids",
    )
    makers = {"VGC_Q4": vgc_packets, "STROM": strom_packets, "DENSE": dense_packets}
    packets = []
    for segment_id in ids:
        codec = draw(st.sampled_from(sorted(makers)), label="codec")
        packets.append(draw(makers[codec](segment_id)))
    return packets


messages = packet_lists().map(encode_message)


# --------------------------------------------------------------------------------------
# Round trips and canonical encoding
# --------------------------------------------------------------------------------------


@given(packets=packet_lists())
def test_decode_inverts_encode(packets):
    """decode(encode(p)) == p for every valid list of packets; message_length is its length."""
    data = encode_message(packets)
    assert len(data) == message_length(packets)
    decoded = decode_message(data)
    assert decoded == packets
    assert [p.segment_id for p in decoded] == [p.segment_id for p in packets]  # order kept


@given(packets=packet_lists())
def test_encode_inverts_decode(packets):
    """encode(decode(b)) == b for every valid message b (from bytes, bytearray or memoryview)."""
    data = encode_message(packets)
    for form in (data, bytearray(data), memoryview(data)):
        assert encode_message(decode_message(form)) == data


def test_large_message_round_trip():
    """Millions of words: checked with whole-array operations, returned as read-only arrays."""
    n = 2_000_000
    index = np.arange(0, n, 2, dtype=np.uint32)  # uint32[n / 2]
    words = index << np.uint32(5) | (index & np.uint32(1)) << np.uint32(4) | (index % np.uint32(16))
    packets = [
        Packet(1, n, Codec.VGC_Q4, 200, words),
        Packet(0, n, Codec.DENSE, 0, np.arange(n, dtype=np.float32).view(np.uint32)),
    ]
    data = encode_message(packets)
    assert len(data) == message_length(packets) == 12 + 2 * 20 + 4 * (n // 2 + n) + 4
    decoded = decode_message(data)
    assert decoded == packets
    assert not decoded[0].words.flags.writeable


# --------------------------------------------------------------------------------------
# Framing: magic, version, reserved, truncation, trailing bytes, CRC
# --------------------------------------------------------------------------------------

VGC_MESSAGE = encode_message([vgc_q4_example()])  # 48 bytes; words at 32, 36, 40; CRC at 44


def test_reference_message_layout():
    """The offsets the tests below patch."""
    assert len(VGC_MESSAGE) == HEADER + SEGMENT + 3 * 4 + 4
    assert struct.unpack_from("<4sHHI", VGC_MESSAGE, 0) == (b"VGCM", 1, 0, 1)
    assert struct.unpack_from("<IIB3sII", VGC_MESSAGE, SEG_ID) == (3, 100, 1, bytes(3), 5, 3)


@pytest.mark.parametrize("magic", [b"VGCX", b"vgcm", bytes(4), b"MCGV"])
def test_wrong_magic(magic):
    assert_rejected(patched(VGC_MESSAGE, 0, "<4s", magic), "magic", 0)


def test_garbage_input_is_wrong_magic():
    assert_rejected(b"PK\x03\x04" + bytes(40), "magic", 0)


@pytest.mark.parametrize("version", [0, 2, 0x100, 0xFFFF])
def test_wrong_version(version):
    assert_rejected(patched(VGC_MESSAGE, 4, "<H", version), "version", 4)


@pytest.mark.parametrize("value", [1, 0x100, 0xFFFF])
def test_header_reserved_nonzero(value):
    assert_rejected(patched(VGC_MESSAGE, 6, "<H", value), "reserved", 6)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_every_truncation_of_a_golden_message_is_rejected(name):
    data = (GOLDEN / f"{name}.bin").read_bytes()
    for length in range(len(data)):
        with pytest.raises(FormatError):
            decode_message(data[:length])


@pytest.mark.parametrize(
    ("length", "field", "offset"),
    [
        (0, "magic", 0),
        (7, "magic", 0),  # the last 4 bytes are always the CRC: only 3 left for the 4-byte magic
        (8, "version", 4),
        (10, "reserved", 6),
        (15, "segment_count", 8),
        (16, "segment_id", SEG_ID),
        (23, "n", SEG_N),
        (24, "codec", SEG_CODEC),
        (27, "reserved", SEG_RESERVED),
        (31, "param", SEG_PARAM),
        (35, "count", SEG_COUNT),
        (36, "words", SEG_WORDS),
        (44, "words", SEG_WORDS),  # the CRC cut off: the words would reach into the last 4 bytes
        (47, "words", SEG_WORDS),
    ],
)
def test_truncation_names_the_field(length, field, offset):
    """A truncated message is reported at the first field that would reach into the last 4 bytes."""
    error = assert_rejected(VGC_MESSAGE[:length], field, offset)
    assert error.reason.startswith("truncated")


@settings(max_examples=25)
@given(packets=packet_lists(max_segments=4))
def test_every_truncation_is_rejected(packets):
    """Every proper prefix of a valid message raises FormatError."""
    data = encode_message(packets)
    for length in range(len(data)):
        with pytest.raises(FormatError):
            decode_message(data[:length])


@pytest.mark.parametrize("extra", [b"\x00", bytes(4), b"\xff" * 5, bytes(100)])
def test_trailing_bytes(extra):
    """Bytes after the CRC: reported where the CRC should have started."""
    error = assert_rejected(VGC_MESSAGE + extra, "crc32", 44)
    assert error.reason.startswith("trailing bytes")


def test_trailing_bytes_with_valid_crc():
    """Appending bytes and a CRC over everything still leaves bytes between the segments and the CRC."""
    assert_rejected(with_crc(VGC_MESSAGE[:-4] + bytes(4)), "crc32", 44)


def test_trailing_bytes_after_empty_message():
    assert_rejected(with_crc(encode_message([])[:-4] + b"\x01"), "crc32", 12)


@pytest.mark.parametrize("position", [44, 45, 46, 47])
def test_crc_mismatch_in_trailer(position):
    data = bytearray(VGC_MESSAGE)
    data[position] ^= 0x01
    error = assert_rejected(bytes(data), "crc32", 44)
    assert "mismatch" in error.reason


@pytest.mark.parametrize("position", [13, 21, 33, 43])
def test_crc_mismatch_in_body(position):
    """A changed body byte whose field would pass the framing checks: the CRC catches it."""
    data = bytearray(VGC_MESSAGE)
    data[position] ^= 0x80
    assert_rejected(bytes(data), "crc32", 44)


def test_every_single_byte_change_of_a_golden_message_is_rejected():
    """Exhaustively: every byte position, every other value."""
    data = (GOLDEN / "vgc_q4.bin").read_bytes()
    for position in range(len(data)):
        for mask in range(1, 256):
            changed = bytearray(data)
            changed[position] ^= mask
            with pytest.raises(FormatError):
                decode_message(bytes(changed))


@given(data=messages, where=st.data())
def test_single_byte_change_is_rejected(data, where):
    """Changing any one byte of a valid message (any bits of it) raises FormatError."""
    position = where.draw(st.integers(0, len(data) - 1), label="position")
    mask = where.draw(st.integers(1, 255), label="xor mask")
    changed = bytearray(data)
    changed[position] ^= mask
    with pytest.raises(FormatError):
        decode_message(bytes(changed))


@given(data=messages, where=st.data())
def test_burst_of_up_to_32_bits_is_rejected(data, where):
    """Any change confined to 4 consecutive bytes is rejected: CRC-32 detects every burst <= 32 bits."""
    position = where.draw(st.integers(0, len(data) - 4), label="position")
    mask = where.draw(st.binary(min_size=4, max_size=4).filter(any), label="xor mask")
    changed = bytearray(data)
    for i, m in enumerate(mask):
        changed[position + i] ^= m
    with pytest.raises(FormatError):
        decode_message(bytes(changed))


# --------------------------------------------------------------------------------------
# Content rules (each message patched and its CRC recomputed)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [MAX_SEGMENT_LEN + 1, 2**31, U32_MAX])
def test_n_too_large(n):
    assert_rejected(patched(VGC_MESSAGE, SEG_N, "<I", n), "n", SEG_N)


def test_n_largest_is_accepted():
    (packet,) = decode_message(patched(VGC_MESSAGE, SEG_N, "<I", MAX_SEGMENT_LEN))
    assert packet.n == MAX_SEGMENT_LEN


@pytest.mark.parametrize("codec", [3, 4, 128, 255])
def test_unknown_codec(codec):
    assert_rejected(patched(VGC_MESSAGE, SEG_CODEC, "<B", codec), "codec", SEG_CODEC)


@pytest.mark.parametrize("byte", [0, 1, 2])
def test_segment_reserved_nonzero(byte):
    """Any nonzero bit in the 3 reserved bytes; reported at the start of the reserved field."""
    assert_rejected(patched(VGC_MESSAGE, SEG_RESERVED + byte, "<B", 0x40), "reserved", SEG_RESERVED)


def test_duplicate_segment_ids():
    """The second segment with an id is reported, at its segment_id field."""
    data = encode_message(
        [vgc_q4_example(segment_id=1), dense_example(segment_id=2), strom_example(segment_id=3)]
    )
    second = HEADER + SEGMENT + 3 * 4
    third = second + SEGMENT + 4 * 4
    assert_rejected(patched(data, second, "<I", 1), "segment_id", second)
    assert_rejected(patched(data, third, "<I", 1), "segment_id", third)
    assert_rejected(patched(data, third, "<I", 2), "segment_id", third)


@pytest.mark.parametrize(
    ("param", "why"),
    [
        (255, "E = 255 is the exponent of infinity"),
        (0x100 | 5, "bit 8 set"),
        (0x80000005, "bit 31 set"),
        (0xFFFFFF00 | 5, "all reserved bits set"),
        (0, "E = 0 with words"),
    ],
)
def test_vgc_param_out_of_range(param, why):
    assert_rejected(patched(VGC_MESSAGE, SEG_PARAM, "<I", param), "param", SEG_PARAM)


@pytest.mark.parametrize("E", [1, 7, 254])
def test_vgc_empty_packet_with_nonzero_e(E):
    data = encode_message([vgc_q4_example(E=0, words=())])
    assert_rejected(patched(data, SEG_PARAM, "<I", E), "param", SEG_PARAM)


@pytest.mark.parametrize("word_number", [0, 1, 2])
@pytest.mark.parametrize("k", [5, 6, 15])
def test_vgc_k_out_of_range(word_number, k):
    """E = 5: k = 5 would decode to exponent 0 (subnormal), k > 5 below it; k = 4 is fine."""
    index = [2, 10, 50][word_number]
    offset = SEG_WORDS + 4 * word_number
    error = assert_rejected(patched(VGC_MESSAGE, offset, "<I", vgc(index, 1, k)), "words", offset)
    assert "E - k" in error.reason


def test_vgc_smallest_exponent_is_accepted():
    """E - k = 1 (the value 2^-126, smallest normal) is valid."""
    (packet,) = decode_message(patched(VGC_MESSAGE, SEG_WORDS + 8, "<I", vgc(50, 1, 4)))
    assert packet.words[2] == vgc(50, 1, 4)


def test_vgc_packet_without_k_zero_is_rejected():
    """E must be the largest exponent sent: a non-empty packet has a word with k = 0."""
    data = patched(VGC_MESSAGE, SEG_WORDS, "<I", vgc(2, 0, 1))  # words now have k = 1, 4, 2
    error = assert_rejected(data, "param", SEG_PARAM)
    assert "k = 0" in error.reason
    with pytest.raises(InputError):
        encode_message([vgc_q4_example(E=6, words=(vgc(2, 0, 1),))])


@pytest.mark.parametrize(
    ("word_number", "index"),
    [(2, 100), (2, 2**27 - 1), (0, 100), (1, 2**27 - 1)],
)
def test_vgc_index_not_below_n(word_number, index):
    offset = SEG_WORDS + 4 * word_number
    assert_rejected(patched(VGC_MESSAGE, offset, "<I", vgc(index, 0, 0)), "words", offset)


def test_first_offending_word_is_reported():
    """Two words break the rule: the first one is named."""
    data = patched(VGC_MESSAGE, SEG_WORDS + 4, "<I", vgc(200, 0, 0))
    data = patched(data, SEG_WORDS + 8, "<I", vgc(300, 0, 0))
    assert_rejected(data, "words", SEG_WORDS + 4)


@pytest.mark.parametrize(
    ("word_number", "index", "case"),
    [(1, 2, "equal"), (2, 10, "equal"), (1, 1, "decreasing"), (2, 5, "decreasing")],
)
def test_vgc_indices_not_strictly_increasing(word_number, index, case):
    offset = SEG_WORDS + 4 * word_number
    error = assert_rejected(patched(VGC_MESSAGE, offset, "<I", vgc(index, 0, 0)), "words", offset)
    assert "strictly increasing" in error.reason


STROM_MESSAGE = encode_message([strom_example()])


@pytest.mark.parametrize(
    ("word_number", "word"),
    [(2, strom(100, 0)), (0, strom(2**30, 1)), (1, strom(2, 1)), (2, strom(3, 0))],
)
def test_strom_bad_indices(word_number, word):
    """Index >= n, equal and decreasing indices, for the STROM word layout."""
    offset = SEG_WORDS + 4 * word_number
    assert_rejected(patched(STROM_MESSAGE, offset, "<I", word), "words", offset)


@pytest.mark.parametrize(
    "tau_bits",
    [
        0x7FC00000,  # NaN
        0xFFC00001,  # NaN with the sign bit
        0x7F800000,  # +inf
        0xFF800000,  # -inf
        0x00000000,  # +0.0
        0x80000000,  # -0.0
        0xBF000000,  # -0.5
        0x80000001,  # negative subnormal
    ],
)
def test_strom_tau_not_finite_positive(tau_bits):
    assert_rejected(patched(STROM_MESSAGE, SEG_PARAM, "<I", tau_bits), "param", SEG_PARAM)


def test_strom_subnormal_tau_is_accepted():
    (packet,) = decode_message(patched(STROM_MESSAGE, SEG_PARAM, "<I", 1))
    assert packet.tau == np.float32(1e-45)


DENSE_MESSAGE = encode_message([dense_example()])  # n = count = 4


@pytest.mark.parametrize("param", [1, 0x3F800000, U32_MAX])
def test_dense_param_nonzero(param):
    assert_rejected(patched(DENSE_MESSAGE, SEG_PARAM, "<I", param), "param", SEG_PARAM)


@pytest.mark.parametrize("n", [0, 3, 5, MAX_SEGMENT_LEN])
def test_dense_count_differs_from_n(n):
    assert_rejected(patched(DENSE_MESSAGE, SEG_N, "<I", n), "count", SEG_COUNT)


@pytest.mark.parametrize("bits", [0x7FC00000, 0x7F800001, 0xFFFFFFFF, 0x7F800000, 0xFF800000])
@pytest.mark.parametrize("word_number", [0, 3])
def test_dense_non_finite(bits, word_number):
    offset = SEG_WORDS + 4 * word_number
    error = assert_rejected(patched(DENSE_MESSAGE, offset, "<I", bits), "words", offset)
    assert "not finite" in error.reason


@pytest.mark.parametrize("message", [VGC_MESSAGE, STROM_MESSAGE], ids=["VGC_Q4", "STROM"])
@pytest.mark.parametrize("n", [0, 1, 2])
def test_count_exceeds_n(message, n):
    """count = 3 words for a segment of n < 3 elements (the length agrees with count)."""
    assert_rejected(patched(message, SEG_N, "<I", n), "count", SEG_COUNT)


def test_count_disagrees_with_length():
    """count is what frames the words: too large runs into the CRC, too small leaves trailing bytes."""
    assert_rejected(patched(VGC_MESSAGE, SEG_COUNT, "<I", 4), "words", SEG_WORDS)
    assert_rejected(patched(VGC_MESSAGE, SEG_COUNT, "<I", U32_MAX), "words", SEG_WORDS)  # no huge allocation
    assert_rejected(patched(VGC_MESSAGE, SEG_COUNT, "<I", 2), "crc32", SEG_WORDS + 8)
    assert_rejected(patched(VGC_MESSAGE, SEG_COUNT, "<I", 0), "crc32", SEG_WORDS)


def test_segment_count_disagrees_with_length():
    assert_rejected(patched(VGC_MESSAGE, 8, "<I", 2), "segment_id", 44)
    assert_rejected(patched(VGC_MESSAGE, 8, "<I", U32_MAX), "segment_id", 44)
    assert_rejected(patched(VGC_MESSAGE, 8, "<I", 0), "crc32", HEADER)


def test_checks_run_in_documented_order():
    """With several problems, the earlier check in docs/format.md's list is the one reported."""
    bad_content = patched(VGC_MESSAGE, SEG_CODEC, "<B", 9)
    # framing before CRC before content
    assert_rejected(bad_content + b"\x00", "crc32", 44)
    assert_rejected(bad_content[:-1] + bytes([bad_content[-1] ^ 1]), "crc32", 44)
    # within a segment: n, codec, reserved, segment_id, param, count, words
    data = patched(bad_content, SEG_N, "<I", U32_MAX)
    assert_rejected(data, "n", SEG_N)
    data = patched(bad_content, SEG_RESERVED, "<B", 1)
    assert_rejected(data, "codec", SEG_CODEC)
    data = patched(VGC_MESSAGE, SEG_RESERVED, "<B", 1)
    data = patched(data, SEG_PARAM, "<I", 255)
    assert_rejected(data, "reserved", SEG_RESERVED)
    data = patched(VGC_MESSAGE, SEG_PARAM, "<I", 255)
    data = patched(data, SEG_N, "<I", 1)
    assert_rejected(data, "param", SEG_PARAM)
    data = patched(VGC_MESSAGE, SEG_N, "<I", 2)  # count 3 > n = 2, and word 2's index 50 >= 2
    assert_rejected(data, "count", SEG_COUNT)
    # words: index >= n before order before k
    data = patched(VGC_MESSAGE, SEG_WORDS + 4, "<I", vgc(1, 0, 15))  # decreasing and k too big
    data = patched(data, SEG_WORDS + 8, "<I", vgc(100, 0, 0))  # index >= n, later word
    assert_rejected(data, "words", SEG_WORDS + 8)
    # segments in order: a problem in the first segment wins over one in the second
    two = encode_message([vgc_q4_example(segment_id=1), vgc_q4_example(segment_id=2)])
    second = HEADER + SEGMENT + 3 * 4
    data = patched(two, second + 4, "<I", U32_MAX)
    data = patched(data, SEG_WORDS, "<I", vgc(2, 0, 9))
    assert_rejected(data, "words", SEG_WORDS)


# --------------------------------------------------------------------------------------
# Robustness: nothing but FormatError, and nothing touched
# --------------------------------------------------------------------------------------


VGCM_V1 = b"VGCM\x01\x00\x00\x00"  # a valid magic and version, so that later checks are reached


@settings(max_examples=200)
@given(data=st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: VGCM_V1 + b)))
def test_garbage_raises_only_format_error(data):
    """Random bytes: FormatError (or, if they happen to be a valid message, canonical packets)."""
    try:
        packets = decode_message(data)
    except FormatError:
        return
    assert encode_message(packets) == data


field_u32 = st.one_of(st.integers(0, U32_MAX), st.sampled_from([0, 1, 2, 5, 40, 255, 256]))


def usually(draw, usual, unusual, label):
    """Draw from ``usual``, or one time in eight from ``unusual``."""
    return draw(unusual if draw(st.integers(0, 7), label=f"{label}: unusual?") == 0 else usual, label=label)


#: Per codec byte: the usual param and the usual words (sorted small indices, or finite values).
USUAL_PARAM = {
    0: st.just(0),
    1: st.sampled_from([0, 1, 5, 15, 16, 254]),
    2: st.sampled_from([1, 0x3E800000, 0x3F800000]),
}
USUAL_WORDS = {
    0: st.lists(finite_f32_bits, max_size=8),
    1: st.lists(st.integers(0, 2047), unique=True, max_size=8).map(sorted),  # indices 0 .. 63
    2: st.lists(st.integers(0, 127), unique=True, max_size=8).map(sorted),  # indices 0 .. 63
}


@st.composite
def framed_garbage(draw):
    """A message with correct framing and CRC whose segment fields and words are random.

    Each field is usually valid for its codec, so that the later checks are reached too.
    """
    body = bytearray()
    segment_count = draw(st.integers(0, 4), label="segment count")
    for _ in range(segment_count):
        segment_id = usually(draw, st.integers(0, 6), field_u32, "segment_id")  # small ids repeat
        codec = usually(draw, st.integers(0, 2), st.integers(0, 255), "codec")
        reserved = usually(draw, st.just(bytes(3)), st.binary(min_size=3, max_size=3), "reserved")
        odd_params = st.one_of(st.sampled_from([255, 0x105, 0x7F800000, 0x7FC00000, 0x80000000]), field_u32)
        param = usually(draw, USUAL_PARAM.get(codec, field_u32), odd_params, "param")
        words = usually(draw, USUAL_WORDS.get(codec, st.just([])), st.lists(field_u32, max_size=8), "words")
        usual_n = st.just(len(words)) if codec == 0 else st.integers(0, 64)
        n = usually(draw, usual_n, st.sampled_from([0, 3, MAX_SEGMENT_LEN, MAX_SEGMENT_LEN + 1]), "n")
        body += struct.pack("<IIB3sII", segment_id, n, codec, reserved, param, len(words))
        body += struct.pack(f"<{len(words)}I", *words)
    return with_crc(struct.pack("<4sHHI", b"VGCM", 1, 0, segment_count) + bytes(body))


@settings(max_examples=300)
@given(data=framed_garbage())
def test_framed_garbage_raises_only_format_error(data):
    """Content checks on random fields: FormatError, or packets that re-encode to the same bytes."""
    try:
        packets = decode_message(data)
    except FormatError:
        return
    assert encode_message(packets) == data
    for packet in packets:
        validate_packet(packet)


def test_decoder_touches_nothing():
    """The caller's buffer is unchanged; the packets do not share its memory."""
    buffer = bytearray(VGC_MESSAGE)
    (packet,) = decode_message(buffer)
    assert bytes(buffer) == VGC_MESSAGE
    assert not packet.words.flags.writeable
    with pytest.raises(ValueError):
        packet.words[0] = 0
    buffer[SEG_WORDS] ^= 0xFF  # changing the caller's buffer afterwards does not change the packet
    assert packet.words[0] == vgc(2, 0, 0)

    bad = bytearray(patched(VGC_MESSAGE, SEG_CODEC, "<B", 7))
    before = bytes(bad)
    with pytest.raises(FormatError):
        decode_message(bad)
    assert bytes(bad) == before


EMPTY = encode_message([])


@pytest.mark.parametrize(
    "data",
    ["VGCM", [1, 2, 3], None, 12, np.frombuffer(EMPTY, np.uint8), array.array("B", EMPTY)],
    ids=["str", "list", "None", "int", "ndarray", "array"],
)
def test_decoder_rejects_what_is_not_bytes_bytearray_or_memoryview(data):
    """Only bytes, bytearray and memoryview are messages (docs/conformance.md): other buffer
    objects, even holding a valid message, are refused with InputError("data")."""
    with pytest.raises(InputError) as err:
        decode_message(data)
    assert err.value.name == "data"


def test_a_memoryview_of_any_buffer_is_read_as_its_bytes():
    assert decode_message(memoryview(np.frombuffer(EMPTY, np.uint8))) == []
    assert decode_message(memoryview(bytearray(EMPTY))) == []


# --------------------------------------------------------------------------------------
# The encoder refuses invalid packets
# --------------------------------------------------------------------------------------

GOOD = vgc_q4_example(segment_id=99)


@pytest.mark.parametrize(
    ("packets", "name", "value"),
    [
        ([GOOD, vgc_q4_example(E=255)], "packets[1].param", 255),
        ([vgc_q4_example(E=0x105)], "packets[0].param", 0x105),
        ([vgc_q4_example(E=0)], "packets[0].param", 0),
        ([vgc_q4_example(E=3, words=())], "packets[0].param", 3),
        ([vgc_q4_example(words=(vgc(2, 0, 0), vgc(100, 0, 0)))], "packets[0].words[1]", "0x00000c80"),
        ([GOOD, vgc_q4_example(words=(vgc(2, 0, 0), vgc(2, 1, 0)))], "packets[1].words[1]", "0x00000050"),
        ([vgc_q4_example(words=(vgc(3, 0, 0), vgc(2, 0, 0)))], "packets[0].words[1]", "0x00000040"),
        ([vgc_q4_example(E=5, words=(vgc(2, 0, 5),))], "packets[0].words[0]", "0x00000045"),
        ([vgc_q4_example(n=2)], "packets[0].count", 3),
        ([vgc_q4_example(n=MAX_SEGMENT_LEN + 1)], "packets[0].n", MAX_SEGMENT_LEN + 1),
        ([strom_example(tau=0.0)], "packets[0].param", 0),
        ([strom_example(tau=float("inf"))], "packets[0].param", 0x7F800000),
        ([strom_example(tau=-1.0)], "packets[0].param", 0xBF800000),
        ([dense_example(values=(1.0, float("nan")))], "packets[0].words[1]", "0x7fc00000"),
        ([Packet(0, 3, Codec.DENSE, 0, np.zeros(2, np.uint32))], "packets[0].count", 2),
        ([Packet(0, 2, Codec.DENSE, 1, np.zeros(2, np.uint32))], "packets[0].param", 1),
        ([GOOD, dense_example(segment_id=5), vgc_q4_example(segment_id=99)], "packets[2].segment_id", 99),
        ([vgc_q4_example(segment_id=-1)], "packets[0].segment_id", "-1"),
        ([vgc_q4_example(segment_id=2**32)], "packets[0].segment_id", str(2**32)),
        ([Packet(0, 2.0, Codec.DENSE, 0, np.zeros(2, np.uint32))], "packets[0].n", "2.0"),
        ([GOOD, "not a packet"], "packets[1]", "str"),
    ],
)
def test_encoder_rejects_invalid_packets(packets, name, value):
    """InputError names the packet's position, the field and the value."""
    with pytest.raises(InputError) as info:
        encode_message(packets)
    assert type(info.value) is InputError
    assert (info.value.name, info.value.value) == (name, value), str(info.value)
    assert name in str(info.value)


def test_encoder_rejects_two_dimensional_words():
    packet = Packet(0, 4, Codec.DENSE, 0, np.zeros((2, 2), np.uint32))
    with pytest.raises(InputError) as info:
        encode_message([packet])
    assert info.value.name == "packets[0].words"


def test_validate_packet():
    """The same rules on one packet, named "packet"; valid packets pass silently."""
    validate_packet(GOOD)
    validate_packet(vgc_q4_example(E=0, words=()))
    validate_packet(strom_example())
    validate_packet(dense_example())
    with pytest.raises(InputError) as info:
        validate_packet(vgc_q4_example(E=255))
    assert info.value.name == "packet.param"
    with pytest.raises(InputError) as info:
        validate_packet(strom_example(words=(strom(5, 0), strom(5, 1))))
    assert info.value.name == "packet.words[1]"


def test_message_length_of_nothing():
    assert message_length([]) == len(encode_message([])) == 16
