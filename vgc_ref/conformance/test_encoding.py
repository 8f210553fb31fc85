"""Properties of the message container (docs/format.md): packets and
bytes identical to the reference, canonical both ways, every malformed message rejected."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import vgc_ref as ref
from vgc_ref.conformance.cases import MALFORMED_MESSAGES, valid_message
from vgc_ref.conformance.compare import (
    assert_bytes_equal,
    assert_packets_equal,
    assert_same_outcome,
    call,
)
from vgc_ref.conformance.strategies import packet_lists, step_inputs, strom_taus, vgc_hyperparameters


@given(
    segments=st.lists(
        st.tuples(
            st.sampled_from(["vgc", "strom", "dense"]),
            step_inputs(max_n=24),
            vgc_hyperparameters(),
            strom_taus(),
        ),
        max_size=4,
    ),
    order=st.randoms(use_true_random=False),
)
def test_packets_and_message_bytes_equal_reference(impl, segments, order):
    """Steps of several segments with every codec, then encode_message: every packet and the
    message are byte-identical to the reference's."""
    ids = list(range(len(segments)))
    order.shuffle(ids)  # segment ids in any order within the message
    got_packets, want_packets = [], []
    for segment_id, (kind, (r, v, g, s), hyper, tau) in zip(ids, segments):
        if kind == "dense":
            packet = ref.dense_packet(segment_id, g)
            got_packets.append(packet)
            want_packets.append(packet)
            continue
        got_state = ref.SegmentState(segment_id, r.copy(), v.copy())
        want_state = ref.SegmentState(segment_id, r.copy(), v.copy())
        if kind == "vgc":
            params = ref.VGCParams(**hyper)
            got_packets.append(impl.vgc_step(got_state, g.copy(), s.copy(), params))
            want_packets.append(ref.vgc_step(want_state, g.copy(), s.copy(), params))
        else:
            params = ref.StromParams(tau)
            got_packets.append(impl.strom_step(got_state, g.copy(), params))
            want_packets.append(ref.strom_step(want_state, g.copy(), params))
    assert_packets_equal("packets of the step", got_packets, want_packets)
    assert_bytes_equal(
        "encode_message(packets)", impl.encode_message(got_packets), ref.encode_message(want_packets)
    )


@given(packets=packet_lists())
@example(packets=[])
@example(packets=ref.decode_message(valid_message()))
def test_encoding_is_canonical_both_ways(impl, packets):
    """For any valid packet list p with reference bytes b: encode(p) == b, decode(b) == p, and
    encode(decode(b)) == b (one list of packets has exactly one byte string)."""
    want = ref.encode_message(packets)
    assert_bytes_equal("encode_message(p)", impl.encode_message(packets), want)
    decoded = impl.decode_message(want)
    assert_packets_equal("decode_message(b)", decoded, packets)
    assert_bytes_equal("encode_message(decode_message(b))", impl.encode_message(decoded), want)


def _check_rejected(impl, data: bytes, what: str):
    buffer = bytearray(data)
    _, want_err = call(ref.decode_message, bytes(data))
    got, got_err = call(impl.decode_message, buffer)
    assert_same_outcome(what, got_err, want_err)
    assert bytes(buffer) == data, f"{what}: the message buffer was modified"
    return got, want_err


@pytest.mark.parametrize("case", list(MALFORMED_MESSAGES))
def test_decode_rejects_malformed_message(impl, case):
    """Every malformed-message class (wrong magic or version, truncation, trailing bytes, CRC,
    index >= n, indices not increasing, k or E out of range, reserved bits, n > 2^27,
    duplicate segment ids, counts that disagree with the length, bad tau, non-finite dense
    values): FormatError with the reference's field and byte offset; the input untouched."""
    data = MALFORMED_MESSAGES[case]
    _, want_err = _check_rejected(impl, data, f"decode_message({case})")
    assert want_err is not None, f"the reference accepts the malformed message {case}"


@pytest.mark.parametrize("case", list(MALFORMED_MESSAGES))
def test_decode_accumulate_rejects_malformed_message_out_untouched(impl, case):
    """decode_accumulate with a malformed message from the last rank: FormatError with the
    reference's field, offset and rank, and the ``out`` arrays untouched."""
    good = valid_message()
    sizes = [100, 50, 3]
    messages = [good, good, MALFORMED_MESSAGES[case]]
    sentinel = [np.full(n, np.float32(-7.5)) for n in sizes]
    out = [a.copy() for a in sentinel]
    _, want_err = call(ref.decode_accumulate, messages, sizes, [a.copy() for a in sentinel])
    _, got_err = call(impl.decode_accumulate, messages, sizes, out)
    assert_same_outcome(f"decode_accumulate(..., {case})", got_err, want_err)
    for j, (a, b) in enumerate(zip(out, sentinel)):
        assert a.tobytes() == b.tobytes(), f"out[{j}] was written although a message was rejected"


@given(
    packets=packet_lists(max_segments=3),
    edits=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=3),
    fix_crc=st.booleans(),
    cut=st.integers(0, 3),
)
def test_decode_agrees_with_reference_on_corrupted_messages(impl, packets, edits, fix_crc, cut):
    """Random byte edits of a valid message (CRC recomputed or not, truncated or not): the
    implementation accepts exactly what the reference accepts, with equal packets, and
    rejects the rest with the reference's FormatError field and offset."""
    import struct
    import zlib

    data = bytearray(ref.encode_message(packets))
    for position, value in edits:
        data[position % len(data)] = value
    if cut:
        data = data[:-cut]
    if fix_crc and len(data) >= 4:
        data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    got, _ = _check_rejected(impl, bytes(data), "decode_message(corrupted)")
    if got is not None:
        assert_packets_equal("decode_message(corrupted)", got, ref.decode_message(bytes(data)))
