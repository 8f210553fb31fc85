"""Properties of one step on one segment: the criterion, quantization, the residual, and the
error behaviour (docs/algorithm.md sections 2-4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import vgc_ref as ref
from vgc_ref.conformance.cases import STROM_EDGE_CASES, VGC_EDGE_CASES, StepCase
from vgc_ref.conformance.compare import assert_bits_equal, compare_step
from vgc_ref.conformance.strategies import (
    dyadic_vectors,
    step_inputs,
    strom_taus,
    vectors,
    vgc_hyperparameters,
)

f32 = np.float32
segment_ids = st.one_of(st.just(0), st.integers(0, 2**32 - 1))


def vgc_params(**kw):
    return ref.VGCParams(**kw)


# --------------------------------------------------------------------------------------
# Criterion and quantization equal to the reference
# --------------------------------------------------------------------------------------


@given(inputs=step_inputs(), hyper=vgc_hyperparameters(), segment_id=segment_ids)
@example(
    inputs=tuple(np.array(a, f32) for a in ([1.0, 3.0, 2.0], [0.5, 4.5, 0.5], [0.0] * 3, [0.0] * 3)),
    hyper={"alpha": 2.0, "zeta": 0.5, "tau": 0.0, "residual": "feedback"},
    segment_id=7,
)
def test_vgc_step_equals_reference(impl, inputs, hyper, segment_id):
    """Packet (E, words), r and v after one VGC step equal the reference's bit for bit, on
    random and edge inputs, for every hyperparameter and both residual modes."""
    r, v, g, s = inputs
    compare_step(impl, "vgc", r, v, g, s, vgc_params(**hyper), segment_id)


@pytest.mark.parametrize("case", VGC_EDGE_CASES, ids=lambda c: c.name)
def test_vgc_step_equals_reference_on_edge_cases(impl, case: StepCase):
    """The same, on hand-picked edges: ties at the threshold, k at 15 and 16, the sqrt(2)
    rounding constant, subnormals, overflow of r*r, the exponent clamp, signed zeros."""
    r, v, g, s = case.arrays()
    try:
        compare_step(impl, "vgc", r, v, g, s, vgc_params(**case.params), segment_id=3)
    except AssertionError as err:
        raise AssertionError(
            f"{err}\n  case {case.name} ({case.why}): r={r.tolist()} v={v.tolist()} g={g.tolist()} "
            f"s={s.tolist()} params={case.params}"
        ) from None


@given(n=st.integers(0, 40), data=st.data(), tau=strom_taus(), segment_id=segment_ids)
def test_strom_step_equals_reference(impl, n, data, tau, segment_id):
    """Strom's packet (tau, words) and r equal the reference's bit for bit (v untouched)."""
    r = data.draw(vectors(n), label="r")
    g = data.draw(vectors(n), label="g")
    v = data.draw(vectors(n, min_value=0.0), label="v")
    compare_step(impl, "strom", r, v, g, None, ref.StromParams(tau), segment_id)


@pytest.mark.parametrize("case", STROM_EDGE_CASES, ids=lambda c: c.name)
def test_strom_step_equals_reference_on_edge_cases(impl, case: StepCase):
    """The same, on hand-picked edges: |r| == tau, rounding of r - tau, subnormal tau."""
    r, v, g, _ = case.arrays()
    try:
        compare_step(impl, "strom", r, v, g, None, ref.StromParams(**case.params), segment_id=1)
    except AssertionError as err:
        raise AssertionError(
            f"{err}\n  case {case.name} ({case.why}): r={r.tolist()} g={g.tolist()} params={case.params}"
        ) from None


# --------------------------------------------------------------------------------------
# Residual exactness and conservation (stated without the reference)
# --------------------------------------------------------------------------------------


@given(inputs=step_inputs(), hyper=vgc_hyperparameters())
def test_residual_is_exact(impl, inputs, hyper):
    """After one step: a sent element has v = 0 and r = (r + g) - q exactly (feedback; so
    r + q == r + g in float64) or r = +0.0 (reset); a held element keeps r = r + g and has
    v = zeta32 * (v + s)."""
    r, v, g, s = inputs
    params = vgc_params(**hyper)
    with np.errstate(over="ignore", under="ignore"):
        r_acc, v_acc = r + g, v + s  # float32[n]
        v_held = params.zeta32 * v_acc
    state = ref.SegmentState(0, r.copy(), v.copy())
    packet = impl.vgc_step(state, g.copy(), s.copy(), params)
    index, q = ref.packet_entries(
        ref.Packet(packet.segment_id, packet.n, packet.codec, packet.param, packet.words)
    )
    held = np.ones(r.size, bool)
    held[index] = False
    if hyper["residual"] == "feedback":
        np.testing.assert_array_equal(
            state.r[index].astype(np.float64) + q.astype(np.float64),
            r_acc[index].astype(np.float64),
            err_msg="feedback: r_after + q must equal r + g exactly for every sent element",
        )
    else:
        assert_bits_equal(
            "reset: r of sent elements (must be +0.0)", state.r[index], np.zeros(index.size, f32)
        )
    assert_bits_equal("v of sent elements (must be +0.0)", state.v[index], np.zeros(index.size, f32))
    assert_bits_equal("r of held elements (must be r + g)", state.r[held], r_acc[held])
    assert_bits_equal("v of held elements (must be zeta32 * (v + s))", state.v[held], v_held[held])


@given(
    grads=st.integers(1, 30).flatmap(lambda n: st.lists(dyadic_vectors(n), min_size=1, max_size=20)),
    hyper=vgc_hyperparameters(),
    tau=st.sampled_from([0.25, 1.0, 0.0625]),
)
def test_conservation(impl, grads, hyper, tau):
    """Feedback mode, VGC and Strom: after every step, sum of g added == sum of q sent + r,
    exactly (the gradients are small integers times 2^-4, so every float32 sum is exact)."""
    n = grads[0].shape[0]
    params = vgc_params(**{**hyper, "residual": "feedback"})
    for kind in ("vgc", "strom"):
        state = ref.SegmentState.zeros(n)
        added = np.zeros(n, np.float64)
        sent = np.zeros(n, np.float64)
        for step, g in enumerate(grads):
            s = (g * g + f32(0.5) * (step % 3)).astype(f32)
            if kind == "vgc":
                packet = impl.vgc_step(state, g.copy(), s, params)
            else:
                packet = impl.strom_step(state, g.copy(), ref.StromParams(tau))
            index, q = ref.packet_entries(
                ref.Packet(packet.segment_id, packet.n, packet.codec, packet.param, packet.words)
            )
            added += g
            np.add.at(sent, index, q.astype(np.float64))
            np.testing.assert_array_equal(
                sent + state.r.astype(np.float64),
                added,
                err_msg=f"{kind}: sum of q sent + r != sum of g added after step {step}",
            )


# --------------------------------------------------------------------------------------
# Invalid inputs: the reference's error, the state unchanged
# --------------------------------------------------------------------------------------


def _put(x, positions, value):
    x = x.copy()
    x[positions] = value
    return x


#: name -> (kind or None for both, function (r, v, g, s, pos) -> (r, v, g, s)).
INVALID_INPUTS = {
    "g_nan": (None, lambda r, v, g, s, p: (r, v, _put(g, p, np.nan), s)),
    "g_inf": (None, lambda r, v, g, s, p: (r, v, _put(g, p, np.inf), s)),
    "g_negative_inf": (None, lambda r, v, g, s, p: (r, v, _put(g, p, -np.inf), s)),
    "s_nan": ("vgc", lambda r, v, g, s, p: (r, v, g, _put(s, p, np.nan))),
    "s_inf": ("vgc", lambda r, v, g, s, p: (r, v, g, _put(s, p, np.inf))),
    "s_negative": ("vgc", lambda r, v, g, s, p: (r, v, g, _put(s, p, -1e-30))),
    "s_negative_then_nan_later": (
        "vgc",
        lambda r, v, g, s, p: (r, v, g, _put(_put(s, p[:1], -2.0), p[1:], np.nan)),
    ),
    "g_nan_and_s_negative": (
        "vgc",
        lambda r, v, g, s, p: (r, v, _put(g, p[-1:], np.nan), _put(s, p[:1], -1.0)),
    ),
    "r_plus_g_overflows": (None, lambda r, v, g, s, p: (_put(r, p, 3e38), v, _put(g, p, 3e38), s)),
    "v_plus_s_overflows": ("vgc", lambda r, v, g, s, p: (r, _put(v, p, 3e38), g, _put(s, p, 3e38))),
    "g_float64": (None, lambda r, v, g, s, p: (r, v, g.astype(np.float64), s)),
    "s_float64": ("vgc", lambda r, v, g, s, p: (r, v, g, s.astype(np.float64))),
    "g_too_short": (None, lambda r, v, g, s, p: (r, v, g[1:], s)),
    "s_too_long": ("vgc", lambda r, v, g, s, p: (r, v, g, np.append(s, f32(0)))),
    "g_2d": (None, lambda r, v, g, s, p: (r, v, g.reshape(1, -1), s)),
    "g_list": (None, lambda r, v, g, s, p: (r, v, g.tolist(), s)),
}
_INVALID_IDS = [
    (name, kind)
    for name, (only, _) in INVALID_INPUTS.items()
    for kind in ("vgc", "strom")
    if only in (None, kind)
]


@pytest.mark.parametrize(("case", "kind"), _INVALID_IDS, ids=[f"{k}-{c}" for c, k in _INVALID_IDS])
@settings(max_examples=max(3, settings().max_examples // 6))  # 27 cases, each a fixed error class
@given(data=st.data())
def test_invalid_step_inputs_rejected_state_unchanged(impl, case, kind, data):
    """Non-finite g or s, negative s, r + g or v + s overflowing, wrong dtype, shape, length or
    type: the reference's exception class (or a subclass) with the same name, segment and
    first bad index, and r, v, g, s exactly as they were."""
    n = data.draw(st.integers(2, 40), label="n")
    r = data.draw(vectors(n, -(2.0**100), 2.0**100), label="r")
    v = data.draw(vectors(n, 0.0, 2.0**100), label="v")
    g = data.draw(vectors(n, -(2.0**100), 2.0**100), label="g")
    s = data.draw(vectors(n, 0.0, 2.0**100), label="s")
    positions = sorted(
        data.draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=4, unique=True), label="bad")
    )
    r, v, g, s = INVALID_INPUTS[case][1](r, v, g, s, np.array(positions))
    params = vgc_params() if kind == "vgc" else ref.StromParams(1.0)
    segment_id = data.draw(segment_ids, label="segment_id")
    compare_step(impl, kind, r, v, g, s, params, segment_id)
