"""Rank-ordered aggregation (docs/algorithm.md section 7)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from slow_reference import slow_aggregate
from strategies import vectors

from vgc_ref import (
    Compressor,
    FormatError,
    InputError,
    SegmentMismatchError,
    aggregate_packets,
    decode_accumulate,
    encode_message,
    packet_entries,
)

f32 = np.float32


@st.composite
def worker_steps(draw):
    """label: sizes, P, method, per-rank gradients (two steps)."""
    sizes = draw(st.lists(st.integers(0, 12), min_size=1, max_size=3), label="sizes")
    n_ranks = draw(st.integers(1, 5), label="P")
    method = draw(st.sampled_from(["none", "vgc", "strom", "hybrid", "topk"]), label="method")
    grads = [[[draw(vectors(n, -1e6, 1e6)) for n in sizes] for _rank in range(n_ranks)] for _step in range(2)]
    return sizes, n_ranks, method, grads


def compressors_for(sizes, n_ranks, method):
    kw = {"tau": 0.5} if method in ("strom", "hybrid") else {"fraction": 0.3} if method == "topk" else {}
    return [Compressor(sizes, method, alpha=1.0, **kw) for _ in range(n_ranks)]


@given(worker_steps())
def test_aggregate_equals_rank_ordered_float32_sum(case):
    """g_hat equals the element-by-element rank-ordered float32 sum divided by P."""
    sizes, n_ranks, method, grads = case
    comps = compressors_for(sizes, n_ranks, method)
    for step_grads in grads:
        packet_lists = [c.compress(g, [np.abs(x) for x in g]) for c, g in zip(comps, step_grads)]
        g_hat = aggregate_packets(packet_lists, sizes)
        for j, n in enumerate(sizes):
            per_rank = []
            for packets in packet_lists:
                index, value = packet_entries(packets[j])
                per_rank.append(dict(zip(index.tolist(), value)))
            assert g_hat[j].tobytes() == slow_aggregate(per_rank, n).tobytes()


@given(worker_steps())
def test_decode_accumulate_is_bit_identical_to_packets_and_to_out(case):
    """Messages through the wire give the same bits as the packets; ``out`` gets them too."""
    sizes, n_ranks, method, grads = case
    comps = compressors_for(sizes, n_ranks, method)
    for step_grads in grads:
        packet_lists = [c.compress(g, [np.abs(x) for x in g]) for c, g in zip(comps, step_grads)]
        messages = [encode_message(p) for p in packet_lists]
        want = aggregate_packets(packet_lists, sizes)
        out = [np.full(n, np.nan, f32) for n in sizes]
        got = decode_accumulate(messages, sizes, out=out)
        for a, b, c in zip(want, got, out):
            assert a.tobytes() == b.tobytes() == c.tobytes()


def test_packet_order_within_a_message_does_not_matter():
    """Segment order in a message is free; the rank order is what fixes the sum."""
    sizes = [3, 2]
    rng = np.random.default_rng(0)
    comps = compressors_for(sizes, 2, "none")
    lists = [c.compress([rng.standard_normal(n).astype(f32) for n in sizes]) for c in comps]
    a = aggregate_packets(lists, sizes)
    b = aggregate_packets([list(reversed(p)) for p in lists], sizes)
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b))


def test_rank_order_matters_in_float32():
    """(1e8 + 1) - 1e8 in float32 is 0, while (1e8 - 1e8) + 1 is 1: order is part of the spec."""
    big = np.array([1e8], f32)
    lists = [Compressor([1], "none").compress([x]) for x in (big, np.array([1.0], f32), -big)]
    assert aggregate_packets(lists, [1])[0][0] == 0.0
    lists = [lists[0], lists[2], lists[1]]
    assert aggregate_packets(lists, [1])[0][0] == f32(1.0) / f32(3)


def valid_messages():
    comps = compressors_for([4, 2], 3, "vgc")
    rng = np.random.default_rng(1)
    messages = []
    for c in comps:
        g = [rng.standard_normal(n).astype(f32) for n in (4, 2)]
        messages.append(c.message(g, [x * x for x in g]))
    return messages


def test_a_bad_message_is_rejected_before_any_output_is_written():
    messages = valid_messages()
    out = [np.full(4, 7.0, f32), np.full(2, 7.0, f32)]
    bad = bytearray(messages[2])
    bad[-1] ^= 0xFF
    with pytest.raises(FormatError) as info:
        decode_accumulate([*messages[:2], bytes(bad)], [4, 2], out=out)
    assert info.value.rank == 2 and "rank 2" in str(info.value)
    assert all((o == 7.0).all() for o in out)


@pytest.mark.parametrize("sizes", [[4], [4, 2, 1], [4, 3]])
def test_a_layout_mismatch_is_rejected(sizes):
    out = [np.full(n, 7.0, f32) for n in sizes]
    with pytest.raises(SegmentMismatchError):
        decode_accumulate(valid_messages(), sizes, out=out)
    assert all((o == 7.0).all() for o in out)


def test_bad_out_buffers_and_no_ranks_are_rejected():
    with pytest.raises(InputError):
        decode_accumulate(valid_messages(), [4, 2], out=[np.zeros(4, f32), np.zeros(3, f32)])
    with pytest.raises(InputError):
        decode_accumulate(valid_messages(), [4, 2], out=[np.zeros(4, f32), np.zeros(2, np.float64)])
    with pytest.raises(InputError):
        decode_accumulate([], [4, 2])


def test_empty_packets_aggregate_to_zero():
    comps = compressors_for([5], 2, "vgc")
    messages = [c.message([np.zeros(5, f32)], [np.ones(5, f32)]) for c in comps]
    (g_hat,) = decode_accumulate(messages, [5])
    assert g_hat.tobytes() == np.zeros(5, f32).tobytes()
