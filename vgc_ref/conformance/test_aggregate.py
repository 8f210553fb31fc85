"""Properties of decode-and-accumulate across P workers (docs/algorithm.md section 7)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import vgc_ref as ref
from vgc_ref.conformance.cases import AGGREGATE_EDGE_CASES, BAD_AGGREGATIONS, AggregateCase
from vgc_ref.conformance.compare import assert_bits_equal, assert_same_outcome, call
from vgc_ref.conformance.strategies import valid_packets


def compare_aggregate(impl, messages, sizes, use_out):
    want = ref.decode_accumulate(messages, sizes)
    if use_out:
        out = [np.full(n, np.float32(np.nan)) for n in sizes]
        got = impl.decode_accumulate(messages, sizes, out)
        for j, (o, w) in enumerate(zip(out, want)):
            assert_bits_equal(f"out[{j}] after decode_accumulate(..., out)", o, w)
    else:
        got = impl.decode_accumulate(messages, sizes)
    assert isinstance(got, (list, tuple)) and len(got) == len(sizes), (
        f"decode_accumulate must return one array per segment ({len(sizes)}), got {type(got).__name__}"
    )
    for j, (g, w) in enumerate(zip(got, want)):
        assert_bits_equal(f"g_hat of segment {j}", g, w)


@st.composite
def rank_messages(draw):
    """P in 1..6 workers' messages over the same segment layout (small n), with values
    whose float32 sum depends on the order of the additions."""
    sizes = draw(st.lists(st.integers(0, 12), min_size=1, max_size=3), label="sizes")
    n_ranks = draw(st.integers(1, 6), label="P")
    order_sensitive = st.sampled_from([1.0, -1.0, 2.0**-24, 2.0**24, -(2.0**24), 0.1, -0.0, 3e38, -3e38])
    messages = []
    for _ in range(n_ranks):
        packets = [
            draw(valid_packets(segment_id=j, max_n=12, n=n, dense_values=order_sensitive), label="packet")
            for j, n in enumerate(sizes)
        ]
        draw(st.randoms(use_true_random=False), label="order").shuffle(packets)
        messages.append(ref.encode_message(packets))
    return messages, sizes


@given(case=rank_messages(), use_out=st.booleans())
def test_aggregation_equals_reference_in_rank_order(impl, case, use_out):
    """g_hat of P messages (every codec, segments in any order within a message) equals the
    reference's rank-ordered float32 sum divided by float32(P), bit for bit; with ``out``
    given, the arrays are written in place."""
    messages, sizes = case
    compare_aggregate(impl, messages, sizes, use_out)


@pytest.mark.parametrize("case", AGGREGATE_EDGE_CASES, ids=lambda c: c.name)
def test_aggregation_rank_order_edge_cases(impl, case: AggregateCase):
    """Hand-picked aggregations where any order but rank order, an accumulator that does not
    start at +0.0, or a multiplication by 1/P gives a different g_hat."""
    try:
        compare_aggregate(impl, case.messages(), case.sizes, use_out=False)
    except AssertionError as err:
        raise AssertionError(f"{err}\n  case {case.name}: {case.why}; ranks={case.ranks}") from None


@pytest.mark.parametrize("case", list(BAD_AGGREGATIONS))
def test_aggregation_rejects_bad_input_out_untouched(impl, case):
    """Messages that miss a segment, carry an unexpected one, disagree on n, are absent, or are
    malformed in any rank: the reference's exception class (FormatError with its field,
    offset and rank), and ``out`` untouched."""
    messages, sizes = BAD_AGGREGATIONS[case]
    sentinel = [np.full(n, np.float32(-7.5)) for n in sizes]
    out = [a.copy() for a in sentinel]
    _, want_err = call(ref.decode_accumulate, messages, sizes, [a.copy() for a in sentinel])
    _, got_err = call(impl.decode_accumulate, messages, sizes, out)
    assert_same_outcome(f"decode_accumulate({case})", got_err, want_err)
    for j, (a, b) in enumerate(zip(out, sentinel)):
        assert a.tobytes() == b.tobytes(), f"out[{j}] was written although the call was rejected"
