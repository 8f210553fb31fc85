"""The VGC and Strom steps against a direct transcription of docs/algorithm.md sections 3 and 4."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from slow_reference import slow_strom_step, slow_topk_step, slow_vgc_step
from strategies import dyadic_vectors, hyperparameters, vectors

from vgc_ref import (
    AccumulatorOverflowError,
    Codec,
    HyperparameterError,
    InputError,
    NegativeVarianceError,
    NonFiniteError,
    SegmentState,
    StromParams,
    TopKParams,
    VGCParams,
    dense_packet,
    packet_entries,
    strom_step,
    topk_step,
    vgc_step,
)

f32 = np.float32


def state_of(r, v, segment_id=0):
    return SegmentState(segment_id, np.array(r, f32), np.array(v, f32))


def run_vgc(r, v, g, s, **kw):
    st_ = state_of(r, v)
    packet = vgc_step(st_, np.array(g, f32), np.array(s, f32), VGCParams(**kw))
    return st_, packet


@st.composite
def step_inputs(draw):
    """label: n, r, v, g, s, with r + g and v + s finite."""
    n = draw(st.integers(0, 40), label="n")
    r = draw(vectors(n), label="r")
    v = draw(vectors(n, min_value=0.0), label="v")
    g = draw(vectors(n), label="g")
    s = draw(vectors(n, min_value=0.0), label="s")
    with np.errstate(over="ignore"):
        assume(np.isfinite(r + g).all() and np.isfinite(v + s).all())
    return r, v, g, s


@given(step_inputs(), hyperparameters(), st.sampled_from(["feedback", "reset"]))
def test_vgc_step_equals_transcription(inputs, hyper, residual):
    """State, E and words equal the element-by-element transcription, bit for bit."""
    r, v, g, s = inputs
    alpha, zeta, tau = hyper
    want_r, want_v, want_E, want_words = slow_vgc_step(r, v, g, s, alpha, zeta, tau, residual)
    state, packet = run_vgc(r, v, g, s, alpha=alpha, zeta=zeta, tau=tau, residual=residual)
    assert packet.codec == Codec.VGC_Q4 and packet.n == len(r)
    assert packet.E == want_E
    np.testing.assert_array_equal(packet.words, want_words)
    assert state.r.tobytes() == want_r.tobytes()
    assert state.v.tobytes() == want_v.tobytes()


@given(st.data())
def test_strom_step_equals_transcription(data):
    """Strom's state and words equal the transcription, bit for bit."""
    n = data.draw(st.integers(0, 40), label="n")
    r = data.draw(vectors(n), label="r")
    g = data.draw(vectors(n), label="g")
    tau = data.draw(st.floats(2.0**-100, 2.0**100, width=32), label="tau")
    with np.errstate(over="ignore"):
        assume(np.isfinite(r + g).all())
    want_r, want_words = slow_strom_step(r, g, tau)
    state = state_of(r, np.zeros(n))
    packet = strom_step(state, g, StromParams(tau))
    assert packet.codec == Codec.STROM and packet.tau == f32(tau)
    np.testing.assert_array_equal(packet.words, want_words)
    assert state.r.tobytes() == want_r.tobytes()
    assert not state.v.any()


@given(step_inputs(), hyperparameters())
def test_sent_values_are_powers_of_two_near_r_and_residual_is_exact(inputs, hyper):
    """Every q is a power of two within a factor float32(sqrt 2) of |r| (unless clamped at 2^127),
    has the sign of r, and r - q is exact (so r_after + q == r_before in float64)."""
    r, v, g, s = inputs
    alpha, zeta, tau = hyper
    r_before = (r + g).astype(np.float64)
    state, packet = run_vgc(r, v, g, s, alpha=alpha, zeta=zeta, tau=tau)
    index, q = packet_entries(packet)
    q64 = q.astype(np.float64)
    mantissa, _ = np.frexp(np.abs(q64))
    assert (mantissa == 0.5).all()
    assert (np.sign(q64) == np.sign(r_before[index])).all()
    ratio = np.abs(r_before[index]) / np.abs(q64)
    clamped = np.abs(q64) == 2.0**127
    root2 = float(f32(1.4142135))  # the rounding threshold, float32(sqrt 2), just below sqrt 2
    assert (ratio[~clamped] >= root2 / 2).all() and (ratio[~clamped] < root2).all()
    assert (ratio[clamped] >= 1).all() and (ratio[clamped] < 2).all()
    np.testing.assert_array_equal(state.r[index].astype(np.float64) + q64, r_before[index])
    assert not state.v[index].any()


@given(
    st.integers(1, 30).flatmap(lambda n: st.lists(dyadic_vectors(n), min_size=1, max_size=30)),
    hyperparameters(),
)
def test_conservation_is_exact_for_dyadic_gradients(grads, hyper):
    """Feedback mode: sum of g added == sum of q sent + r, exactly, after every step."""
    alpha, zeta, tau = hyper
    n = grads[0].shape[0]
    state = SegmentState.zeros(n)
    params = VGCParams(alpha=alpha, zeta=zeta, tau=tau)
    added = np.zeros(n, np.float64)
    sent = np.zeros(n, np.float64)
    rng = np.random.default_rng(len(grads))
    for g in grads:
        s = (g * g + rng.integers(0, 4, n).astype(f32)).astype(f32)
        packet = vgc_step(state, g, s, params)
        index, q = packet_entries(packet)
        added += g
        sent[index] += q
        np.testing.assert_array_equal(added, sent + state.r.astype(np.float64))


@given(st.lists(vectors(8, -1e3, 1e3, edge=False), min_size=1, max_size=20))
def test_conservation_within_rounding_for_random_gradients(grads):
    """Feedback mode with arbitrary float32 gradients: only the step-1 adds round, each by
    at most half an ulp of |r| + |g|."""
    state = SegmentState.zeros(8)
    params = VGCParams(alpha=0.5)
    added = np.zeros(8)
    sent = np.zeros(8)
    bound = np.zeros(8)
    for g in grads:
        bound += np.spacing(np.abs(state.r) + np.abs(g)).astype(np.float64) / 2
        packet = vgc_step(state, g, np.abs(g), params)
        index, q = packet_entries(packet)
        added += g
        sent[index] += q
    assert (np.abs(added - sent - state.r) <= bound).all()


def test_reset_mode_zeroes_sent_residuals():
    state, packet = run_vgc(
        [0, 0, 0], [0, 0, 0], [3.0, -0.1, 5.0], [1.0, 1.0, 100.0], alpha=1.0, residual="reset"
    )
    index, _ = packet_entries(packet)
    assert list(index) == [0]
    assert state.r.tolist() == [0.0, f32(-0.1), 5.0]


# -- edge values, one by one ----------------------------------------------------------


def test_tie_at_threshold_is_not_sent():
    """r*r == alpha*v exactly: the comparison is strict, so nothing is sent and v decays."""
    state, packet = run_vgc([0.0], [0.0], [3.0], [9.0], alpha=1.0, zeta=0.5)
    assert packet.count == 0 and packet.E == 0
    assert state.r[0] == 3.0 and state.v[0] == 4.5
    state, packet = run_vgc([0.0], [0.0], [3.0], [np.nextafter(f32(9.0), f32(0))], alpha=1.0)
    assert packet.count == 1


def test_abs_r_equal_tau_is_sent():
    """|r| == tau passes the magnitude floor (>=); just below it does not."""
    _, packet = run_vgc([0.0], [0.0], [-0.75], [0.0], tau=0.75)
    assert packet.count == 1
    _, packet = run_vgc([0.0], [0.0], [np.nextafter(f32(0.75), f32(0))], [0.0], tau=0.75)
    assert packet.count == 0


def test_k_15_is_sent_and_k_16_is_held():
    """k = E - e: 15 still fits the 4-bit code, 16 stays in the residual."""
    g = np.array([1.0, 2.0**-15, 2.0**-16, -(2.0**-15)], f32)
    state, packet = run_vgc(np.zeros(4), np.zeros(4), g, np.zeros(4))
    assert packet.E == 127
    assert packet.words.tolist() == [(0 << 5) | 0, (1 << 5) | 15, (3 << 5) | (1 << 4) | 15]
    assert state.r.tolist() == [0.0, 0.0, 2.0**-16, 0.0]
    assert state.v.tolist() == [0.0, 0.0, 0.0, 0.0]


def test_zero_and_subnormal_are_never_sent():
    """ef == 0 is not sendable even though 0 > alpha*0 is false and sub*sub underflows."""
    sub = np.float32(1e-45)
    state, packet = run_vgc([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, sub, -sub], [0.0, 0.0, 0.0], alpha=1e-30)
    assert packet.count == 0 and packet.E == 0
    assert state.r.tobytes() == np.array([0.0, sub, -sub], f32).tobytes()


def test_smallest_normal_with_zero_variance_is_sent():
    """tiny*tiny underflows to 0, which is not > alpha*0: even v == 0 holds it back."""
    tiny = np.finfo(np.float32).tiny
    _, packet = run_vgc([0.0], [0.0], [tiny], [0.0])
    assert packet.count == 0
    _, packet = run_vgc([0.0], [0.0], [2.0**-60], [0.0])  # square 2^-120 is normal
    assert packet.count == 1 and packet.E == 127 - 60


def test_sqrt2_rounding_boundary():
    """Mantissa 0x3504F3 (float32 sqrt 2) rounds up to 2, one ulp below rounds down to 1."""
    root2 = f32(1.4142135)
    assert root2.view(np.uint32) & 0x7FFFFF == 0x3504F3
    _, packet = run_vgc([0.0, 0.0], [0.0, 0.0], [root2, np.nextafter(root2, f32(0))], [0.0, 0.0])
    _, q = packet_entries(packet)
    assert q.tolist() == [2.0, 1.0]


def test_values_near_float32_max_clamp_to_2_pow_127():
    """r*r overflows to inf (> alpha*v); e = 255 clamps to 254 and r - 2^127 is exact."""
    big = f32(3e38)
    state, packet = run_vgc([0.0, 0.0], [0.0, 1e37], [big, -big], [0.0, 1e37])
    index, q = packet_entries(packet)
    assert packet.E == 254 and index.tolist() == [0, 1]
    assert q.tolist() == [2.0**127, -(2.0**127)]
    assert state.r.tolist() == [float(big) - 2.0**127, -(float(big) - 2.0**127)]


def test_nothing_sent_gives_empty_packet_with_e_zero():
    state, packet = run_vgc(np.zeros(5), np.zeros(5), np.full(5, 0.1), np.full(5, 1.0), zeta=0.5)
    assert packet.count == 0 and packet.E == 0
    assert (state.v == f32(0.5) * f32(1.0)).all()


def test_empty_segment():
    _, packet = run_vgc([], [], [], [])
    assert packet.n == 0 and packet.count == 0 and packet.E == 0


# -- errors leave the state exactly as it was -----------------------------------------


def assert_rejected(exc_type, g, s, r=(1.0, 2.0, 3.0), v=(0.5, 0.5, 0.5), segment_id=7, **match):
    state = state_of(r, v, segment_id)
    before = state.copy()
    with pytest.raises(exc_type) as info:
        vgc_step(state, g, s, VGCParams())
    assert state.r.tobytes() == before.r.tobytes() and state.v.tobytes() == before.v.tobytes()
    for key, value in match.items():
        assert getattr(info.value, key) == value
    return info.value


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["g", "s"])
def test_non_finite_input_names_segment_and_first_index(bad, which):
    x = np.array([0.0, bad, bad], f32)
    ok = np.zeros(3, f32)
    g, s = (x, ok) if which == "g" else (ok, np.abs(x))
    err = assert_rejected(NonFiniteError, g, s, name=which, segment=7, index=1)
    assert "segment 7" in str(err) and f"{which}[1]" in str(err)


def test_negative_variance_is_rejected():
    assert_rejected(
        NegativeVarianceError, np.zeros(3, f32), np.array([0, 0, -1e-30], f32), index=2, segment=7
    )


def test_accumulator_overflow_is_rejected():
    big = np.finfo(np.float32).max
    assert_rejected(
        AccumulatorOverflowError, np.array([0, big, 0], f32), np.zeros(3, f32), r=(0, big, 0), index=1
    )
    assert_rejected(
        AccumulatorOverflowError, np.zeros(3, f32), np.array([0, 0, big], f32), v=(0, 0, big), index=2
    )


@pytest.mark.parametrize(
    ("g", "s", "name"),
    [
        (np.zeros(3, np.float64), np.zeros(3, f32), "g"),
        (np.zeros(3, f32), np.zeros(3, np.float16), "s"),
        (np.zeros(4, f32), np.zeros(3, f32), "g"),
        (np.zeros(3, f32), np.zeros((3, 1), f32), "s"),
        ([0.0, 0.0, 0.0], np.zeros(3, f32), "g"),
    ],
)
def test_wrong_dtype_shape_or_type_is_rejected(g, s, name):
    assert_rejected(InputError, g, s, name=name)


def test_strom_errors_leave_state_unchanged():
    state = state_of([1.0, np.finfo(np.float32).max], [0.0, 0.0])
    before = state.copy()
    with pytest.raises(AccumulatorOverflowError):
        strom_step(state, np.array([0.0, np.finfo(np.float32).max], f32), StromParams(1.0))
    with pytest.raises(NonFiniteError):
        strom_step(state, np.array([np.nan, 0.0], f32), StromParams(1.0))
    assert state.r.tobytes() == before.r.tobytes()


def test_params_must_have_the_right_type():
    with pytest.raises(TypeError):
        vgc_step(SegmentState.zeros(1), np.zeros(1, f32), np.zeros(1, f32), StromParams(1.0))
    with pytest.raises(TypeError):
        strom_step(SegmentState.zeros(1), np.zeros(1, f32), VGCParams())


def test_dense_packet_carries_every_value_and_rejects_nan():
    g = np.array([1.5, -0.0, 1e-45], f32)
    packet = dense_packet(3, g)
    index, value = packet_entries(packet)
    assert index.tolist() == [0, 1, 2] and value.tobytes() == g.tobytes()
    with pytest.raises(NonFiniteError) as info:
        dense_packet(3, np.array([0.0, np.nan], f32))
    assert info.value.segment == 3 and info.value.index == 1


# -- top-k baseline ---------------------------------------------------------------------


@given(st.data())
def test_topk_step_equals_transcription(data):
    """Top-k state, E and words equal the transcription; at most count(n) words."""
    n = data.draw(st.integers(0, 40), label="n")
    r = data.draw(vectors(n, -(2.0**100), 2.0**100), label="r")
    g = data.draw(vectors(n, -(2.0**100), 2.0**100), label="g")
    fraction = data.draw(st.sampled_from([0.01, 0.1, 0.5, 1.0]), label="fraction")
    params = TopKParams(fraction)
    want_r, want_E, want_words = slow_topk_step(r, g, params.count(n))
    state = state_of(r, np.zeros(n))
    packet = topk_step(state, g, params)
    assert packet.codec == Codec.VGC_Q4 and packet.E == want_E
    np.testing.assert_array_equal(packet.words, want_words)
    assert state.r.tobytes() == want_r.tobytes()
    assert packet.count <= params.count(n)


def test_topk_picks_the_largest_and_breaks_ties_by_index():
    g = np.array([0.5, -4.0, 1.0, 4.0, 0.25], f32)
    state = SegmentState.zeros(5)
    packet = topk_step(state, g, TopKParams(0.4))  # ceil(0.4 * 5) = 2 elements
    index, q = packet_entries(packet)
    assert index.tolist() == [1, 3] and q.tolist() == [-4.0, 4.0]
    state = SegmentState.zeros(5)
    index, _ = packet_entries(topk_step(state, np.ones(5, f32), TopKParams(0.4)))
    assert index.tolist() == [0, 1]


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, float("nan"), True])
def test_topk_fraction_is_validated(fraction):
    with pytest.raises(HyperparameterError):
        TopKParams(fraction)
