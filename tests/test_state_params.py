"""Hyperparameter validation, segment state, segment splitting, the Compressor."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vgc_ref import (
    MAX_SEGMENT_LEN,
    Compressor,
    HyperparameterError,
    InputError,
    NonFiniteError,
    SegmentState,
    StromParams,
    VGCParams,
    segment_bounds,
    split_segments,
)

f32 = np.float32


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": float("inf")}, "alpha"),
        ({"alpha": 1e-50}, "alpha"),  # rounds to 0 in float32
        ({"alpha": 1e39}, "alpha"),  # overflows float32
        ({"alpha": "2"}, "alpha"),
        ({"alpha": True}, "alpha"),
        ({"zeta": -0.1}, "zeta"),
        ({"zeta": 1.0001}, "zeta"),
        ({"zeta": float("nan")}, "zeta"),
        ({"tau": -1.0}, "tau"),
        ({"tau": float("inf")}, "tau"),
        ({"residual": "none"}, "residual"),
    ],
)
def test_bad_vgc_hyperparameters_name_the_parameter(kwargs, name):
    with pytest.raises(HyperparameterError) as info:
        VGCParams(**kwargs)
    assert info.value.name == name and name in str(info.value)


@pytest.mark.parametrize("tau", [0.0, -1.0, 1e-50, float("nan")])
def test_bad_strom_tau_is_rejected(tau):
    with pytest.raises(HyperparameterError):
        StromParams(tau)


def test_hyperparameters_are_float32_once():
    p = VGCParams(alpha=0.1, zeta=0.999, tau=0.3)
    assert p.alpha32 == f32(0.1) and p.zeta32 == f32(0.999) and p.tau32 == f32(0.3)
    assert type(p.alpha32) is np.float32
    with pytest.raises(AttributeError):
        p.alpha = 3.0  # frozen


def test_segment_state_validation():
    with pytest.raises(InputError):
        SegmentState(0, np.zeros(3, np.float64), np.zeros(3, f32))
    with pytest.raises(InputError):
        SegmentState(0, np.zeros(3, f32), np.zeros(4, f32))
    with pytest.raises(InputError):
        SegmentState(-1, np.zeros(3, f32), np.zeros(3, f32))
    with pytest.raises(InputError):
        SegmentState(2**32, np.zeros(3, f32), np.zeros(3, f32))
    with pytest.raises(InputError):
        SegmentState.zeros(MAX_SEGMENT_LEN + 1)
    st_ = SegmentState.zeros(3, 5)
    assert st_.n == 3 and st_.segment_id == 5 and not st_.r.any() and not np.signbit(st_.r).any()


@given(st.integers(0, 10_000), st.integers(1, 3000))
def test_segment_bounds_cover_the_buffer_in_order(total, max_len):
    bounds = segment_bounds(total, max_len)
    assert bounds[0][0] == 0 and bounds[-1][1] == total
    assert all(stop - start <= max_len for start, stop in bounds)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert all(stop > start for start, stop in bounds) or total == 0


def test_split_segments_views_share_memory_and_default_limit_is_2_pow_27():
    flat = np.arange(10, dtype=f32)
    parts = split_segments(flat, 4)
    assert [p.size for p in parts] == [4, 4, 2]
    parts[2][0] = -1
    assert flat[8] == -1
    assert segment_bounds(2**27 + 1) == [(0, 2**27), (2**27, 2**27 + 1)]
    with pytest.raises(InputError):
        split_segments(np.zeros(3), 2)
    with pytest.raises(InputError):
        segment_bounds(10, 2**27 + 1)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("vgc", {"tau": 0.1}),
        ("strom", {}),
        ("hybrid", {"tau": 0.0}),
        ("topk", {"fraction": 0.0}),
        ("dgc", {}),
        ("vgc", {"zeta": 2.0}),
    ],
)
def test_compressor_rejects_bad_configuration(method, kwargs):
    with pytest.raises(HyperparameterError):
        Compressor([3], method, **kwargs)


def test_compressor_validates_every_segment_before_any_state_changes():
    comp = Compressor([3, 2], "vgc")
    g = [np.ones(3, f32), np.array([0.0, np.nan], f32)]
    s = [np.ones(3, f32), np.ones(2, f32)]
    with pytest.raises(NonFiniteError) as info:
        comp.compress(g, s)
    assert info.value.segment == 1 and info.value.index == 1
    assert not comp.states[0].r.any() and not comp.states[0].v.any()
    with pytest.raises(InputError):
        comp.compress(g[:1], s[:1])
    with pytest.raises(InputError):
        comp.compress([np.ones(3, f32), np.ones(2, f32)])  # vgc needs variances


@pytest.mark.parametrize("backend", ["numpy", "numba-cpu"])
def test_compressor_atomic_false_steps_in_turn_with_the_same_results(backend):
    """atomic=False (the DDP hook, on scratch states; backend.vgc_step_scratch): the same
    packets and states as the default on good input, over several chunks; on bad input in
    segment 1 the same error, with segment 0 stepped (the caller throws both away); list
    lengths are still checked first, and none and topk keep their full check."""
    if backend != "numpy":
        pytest.importorskip("numba")
    rng = np.random.default_rng(5)
    g = [rng.standard_normal(n, dtype=f32) for n in (200_000, 9)]
    s = [x * x for x in g]
    atomic, stepwise = (
        Compressor([200_000, 9], "vgc", backend=backend),
        Compressor([200_000, 9], "vgc", backend=backend),
    )
    for _ in range(3):
        assert atomic.compress(g, s) == stepwise.compress(g, s, atomic=False)
    for a, b in zip(atomic.states, stepwise.states):
        assert a.r.tobytes() == b.r.tobytes() and a.v.tobytes() == b.v.tobytes()
    before = [st.copy() for st in stepwise.states]
    bad = [g[0], np.array([0.0] * 8 + [np.inf], f32)]
    with pytest.raises(NonFiniteError) as info:
        stepwise.compress(bad, s, atomic=False)
    assert (info.value.segment, info.value.index) == (1, 8)
    assert stepwise.states[0].r.tobytes() != before[0].r.tobytes()  # stepped: not atomic
    with pytest.raises(InputError):
        stepwise.compress(g[:1], s[:1], atomic=False)
    with pytest.raises(InputError):
        stepwise.compress(g, None, atomic=False)
    none = Compressor([2, 2], "none", backend=backend)
    with pytest.raises(NonFiniteError):
        none.compress([np.ones(2, f32), np.array([1.0, np.nan], f32)], atomic=False)


@pytest.mark.parametrize("backend", ["numpy", "numba-cpu"])
@pytest.mark.parametrize("method", ["vgc", "hybrid", "strom", "topk"])
def test_compressor_into_steps_into_targets_and_never_writes_its_states(backend, method):
    """into= (the DDP hook's spares): the packets of an in-place step, its r and v in the
    targets, the Compressor's own states unchanged, on success and on error; bad targets
    refused by name before anything runs."""
    if backend != "numpy":
        pytest.importorskip("numba")
    rng = np.random.default_rng(8)
    sizes = [100_000, 9]
    g = [rng.standard_normal(n, dtype=f32) for n in sizes]
    s = [x * x for x in g]
    opts = {"tau": 0.5} if method in ("hybrid", "strom") else {}
    comp = Compressor(sizes, method, backend=backend, **opts)
    twin = Compressor(sizes, method, backend=backend, **opts)
    variances = s if comp.uses_variance else None
    for _ in range(2):  # a second step from non-zero state
        into = [SegmentState(j, np.full(n, 3.0, f32), np.full(n, 3.0, f32)) for j, n in enumerate(sizes)]
        before = [(st.r.tobytes(), st.v.tobytes()) for st in comp.states]
        assert comp.compress(g, variances, atomic=False, into=into) == twin.compress(g, variances)
        assert [(st.r.tobytes(), st.v.tobytes()) for st in comp.states] == before
        for a, b in zip(into, twin.states):
            assert a.r.tobytes() == b.r.tobytes() and a.v.tobytes() == b.v.tobytes()
        comp.states = into  # commit, as the hook does
    before = [(st.r.tobytes(), st.v.tobytes()) for st in comp.states]
    spare = [SegmentState.zeros(n, j) for j, n in enumerate(sizes)]
    with pytest.raises(NonFiniteError):
        comp.compress([g[0], np.array([np.nan] * 9, f32)], variances, atomic=False, into=spare)
    assert [(st.r.tobytes(), st.v.tobytes()) for st in comp.states] == before
    bad_targets = [
        spare[:1],  # one per segment
        [spare[0], SegmentState.zeros(9, 5)],  # another segment's id
        [spare[0], SegmentState.zeros(8, 1)],  # another length
        [comp.states[0], spare[1]],  # the segment's own state
    ]
    for into in bad_targets:
        with pytest.raises(InputError) as info:
            comp.compress(g, variances, atomic=False, into=into)
        assert info.value.name.startswith("into"), str(info.value)
    with pytest.raises(InputError):
        comp.compress(g, variances, into=spare)  # atomic steps in place only


def test_compressor_methods_produce_their_codecs():
    g = [np.array([1.0, -2.0, 0.001], f32)]
    for method, codec, kw in [
        ("none", 0, {}),
        ("vgc", 1, {}),
        ("hybrid", 1, {"tau": 0.5}),
        ("strom", 2, {"tau": 0.5}),
    ]:
        (packet,) = Compressor([3], method, **kw).compress(g, [np.zeros(3, f32)])
        assert int(packet.codec) == codec
