"""Every registered backend against the NumPy reference: same bytes, same bits, same errors.

The tests are parametrized over :func:`vgc_ref.backends.backend_names`, so a backend is
tested by adding its line to the registry. A backend that cannot run on this machine is
skipped with the reason its import gave; numba-cuda runs on the CUDA simulator here
(tests/conftest.py turns it on when there is no GPU), on small segments because every
simulated thread is a Python thread.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import F32_MAX, hyperparameters, vectors

from vgc_ref import (
    FormatError,
    InputError,
    NonFiniteError,
    SegmentState,
    StromParams,
    VGCParams,
    dense_packet,
    per_sample_dense_grad_var,
)
from vgc_ref import backends as registry
from vgc_ref.encoding import encode_message
from vgc_ref.packet import Codec

REFERENCE = registry.get_backend("numpy")
SIMULATED = {"numba-cuda"}  # backends whose test sizes stay small here


def _load(name: str) -> registry.Backend:
    try:
        return registry.get_backend(name)
    except (ImportError, RuntimeError) as err:
        pytest.skip(f"backend {name!r} cannot run here: {err}")


@pytest.fixture(scope="module", params=registry.backend_names())
def backend(request) -> registry.Backend:
    return _load(request.param)


def _max_n(backend: registry.Backend) -> int:
    return 20 if backend.name in SIMULATED else 300


def check_examples(backend: registry.Backend, strategy, check) -> None:
    """Run ``check(example)`` on Hypothesis examples; fewer on a simulated backend."""
    budget = {"max_examples": 8} if backend.name in SIMULATED else {}
    settings(**budget)(given(strategy)(check))()


def bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.uint32)


def assert_same_state(a: SegmentState, b: SegmentState) -> None:
    np.testing.assert_array_equal(bits(a.r), bits(b.r))
    np.testing.assert_array_equal(bits(a.v), bits(b.v))


def same_outcome(reference_call, backend_call):
    """Run both; they must raise the same error (message included) or both return.

    Returns the two results, or None when both raised.
    """
    try:
        want = reference_call()
    except NonFiniteError as err:
        with pytest.raises(type(err)) as got:
            backend_call()
        assert str(got.value) == str(err)
        return None
    return want, backend_call()


def assert_same_packet(p, q) -> None:
    assert p == q
    assert encode_message([p]) == encode_message([q])


@st.composite
def vgc_cases(draw, max_n):
    """A state (r, v finite, v >= 0), one step's g and s >= 0, and VGCParams."""
    n = draw(st.integers(0, max_n), label="n")
    r = draw(vectors(n), label="r")
    v = draw(vectors(n, min_value=0.0), label="v")
    g = draw(vectors(n), label="g")
    s = draw(vectors(n, min_value=0.0), label="s")
    alpha, zeta, tau = draw(hyperparameters(), label="alpha, zeta, tau")
    residual = draw(st.sampled_from(["feedback", "reset"]), label="residual")
    return r, v, g, s, VGCParams(alpha=alpha, zeta=zeta, tau=tau, residual=residual)


def _states(r, v, segment_id=3):
    return SegmentState(segment_id, r.copy(), v.copy()), SegmentState(segment_id, r.copy(), v.copy())


# --------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------


def test_registry_lists_the_backends_and_each_names_itself():
    """numpy, numba-cpu and numba-cuda are registered; a loaded backend carries its name."""
    assert {"numpy", "numba-cpu", "numba-cuda"} <= set(registry.backend_names())
    for name in registry.backend_names():
        try:
            assert registry.get_backend(name).name == name
        except (ImportError, RuntimeError):
            pass


def test_the_environment_variable_chooses_the_default(monkeypatch):
    """VGC_BACKEND picks the backend when no name is given."""
    monkeypatch.setenv(registry.ENV_VAR, "numba-cpu")
    assert registry.get_backend().name == "numba-cpu"
    monkeypatch.setenv(registry.ENV_VAR, "no-such-backend")
    with pytest.raises(Exception, match="backend"):
        registry.get_backend()


# --------------------------------------------------------------------------------------
# Steps: equality with the reference
# --------------------------------------------------------------------------------------


def test_vgc_step_gives_the_reference_packet_and_state(backend):
    """Same packet bytes and bit-identical r and v as the reference, edge values included."""

    def check(case):
        r, v, g, s, params = case
        ref_state, state = _states(r, v)
        result = same_outcome(
            lambda: REFERENCE.vgc_step(ref_state, g, s, params), lambda: backend.vgc_step(state, g, s, params)
        )
        if result is not None:  # a sum may overflow: then both raised
            assert_same_packet(result[1], result[0])
        assert_same_state(state, ref_state)

    check_examples(backend, vgc_cases(_max_n(backend)), check)


def test_strom_step_gives_the_reference_packet_and_state(backend):
    """Same packet bytes and bit-identical r as the reference."""

    def check(data):
        n = data.draw(st.integers(0, _max_n(backend)), label="n")
        r = data.draw(vectors(n), label="r")
        g = data.draw(vectors(n), label="g")
        tau = data.draw(st.sampled_from([1.0, 2.0**-15, 1e-3, 3.0, 1e30]), label="tau")
        ref_state, state = _states(r, np.zeros(n, np.float32))
        result = same_outcome(
            lambda: REFERENCE.strom_step(ref_state, g, StromParams(tau)),
            lambda: backend.strom_step(state, g, StromParams(tau)),
        )
        if result is not None:
            assert_same_packet(result[1], result[0])
        assert_same_state(state, ref_state)

    check_examples(backend, st.data(), check)


BAD_KINDS = ["g nan", "g inf", "s nan", "s -inf", "s negative", "r+g overflow", "v+s overflow"]


@st.composite
def bad_cases(draw, max_n):
    """A valid case with one to three bad values planted at random indices."""
    r, v, g, s, params = draw(vgc_cases(max_n).filter(lambda c: c[0].size > 0), label="case")
    n = r.size
    for _ in range(draw(st.integers(1, 3), label="how many")):
        i = draw(st.integers(0, n - 1), label="index")
        kind = draw(st.sampled_from(BAD_KINDS), label="kind")
        if kind == "g nan":
            g[i] = np.nan
        elif kind == "g inf":
            g[i] = -np.inf
        elif kind == "s nan":
            s[i] = np.nan
        elif kind == "s -inf":
            s[i] = -np.inf
        elif kind == "s negative":
            s[i] = -1.0
        elif kind == "r+g overflow":
            r[i], g[i] = F32_MAX, F32_MAX
        else:
            v[i], s[i] = F32_MAX, F32_MAX
    return r, v, g, s, params


def _error_facts(err: Exception) -> tuple:
    return (type(err), getattr(err, "name", None), getattr(err, "segment", None), getattr(err, "index", None))


def test_bad_input_raises_the_reference_error_and_leaves_the_state(backend):
    """Same exception class, name, segment and (lowest) index; r and v unchanged."""
    check_examples(backend, bad_cases(_max_n(backend)), lambda case: _check_bad_case(backend, *case))


def _check_bad_case(backend, r, v, g, s, params):
    ref_state, state = _states(r, v)
    with pytest.raises(NonFiniteError) as want:
        REFERENCE.vgc_step(ref_state, g, s, params)
    for step in (
        lambda: backend.vgc_step(state, g, s, params),
        lambda: backend.check_step(state, g, s),
    ):
        with pytest.raises(NonFiniteError) as got:
            step()
        assert _error_facts(got.value) == _error_facts(want.value)
        assert str(got.value) == str(want.value)
        np.testing.assert_array_equal(bits(state.r), bits(r))
        np.testing.assert_array_equal(bits(state.v), bits(v))
    # Strom checks only g and r + g.
    try:
        REFERENCE.check_step(ref_state, g, None)
    except NonFiniteError as err:
        with pytest.raises(NonFiniteError) as got:
            backend.strom_step(state, g, StromParams(1.0))
        assert str(got.value) == str(err)
        np.testing.assert_array_equal(bits(state.r), bits(r))
    else:
        backend.check_step(state, g, None)


def test_malformed_inputs_raise_the_reference_input_error(backend):
    """Wrong dtype, shape or length: the same InputError, in the same precedence."""
    n = 5
    good = np.ones(n, np.float32)
    nan_g = good.copy()
    nan_g[2] = np.nan
    cases = [
        (good.astype(np.float64), good),
        (good[:4], good),
        (good.reshape(1, n), good),
        ([1.0] * n, good),
        (good, good.astype(np.float16)),
        (good, good[:3]),
        (nan_g, good.astype(np.float64)),  # a non-finite g wins over a malformed s
    ]
    for g, s in cases:
        with pytest.raises(Exception) as want:
            REFERENCE.vgc_step(SegmentState.zeros(n), g, s, VGCParams())
        with pytest.raises(type(want.value)) as got:
            backend.vgc_step(SegmentState.zeros(n), g, s, VGCParams())
        assert str(got.value) == str(want.value)
        with pytest.raises(type(want.value)):
            backend.check_step(SegmentState.zeros(n), g, s)
    with pytest.raises(TypeError):
        backend.vgc_step(SegmentState.zeros(n), good, good, StromParams(1.0))
    with pytest.raises(TypeError):
        backend.strom_step(SegmentState.zeros(n), good, VGCParams())
    with pytest.raises(InputError):
        backend.strom_step(SegmentState.zeros(n), good[:2], StromParams(1.0))


def test_segments_spanning_many_chunks_match_the_reference(backend):
    """Several parallel chunks (and a ragged last one), bad values in a later chunk."""
    if backend.name in SIMULATED:
        n = 53  # many tiles and grid-stride rounds at the simulator's sizes
    else:
        n = 3 * (1 << 16) + 77
    rng = np.random.default_rng(7)
    ref_state, state = _states(np.zeros(n, np.float32), np.zeros(n, np.float32), segment_id=9)
    for step in range(4):
        g = rng.standard_normal(n, dtype=np.float32)
        g[rng.integers(0, n, 5)] *= np.float32(1e4)  # a few large ones raise E
        s = (g * g * rng.uniform(0.0, 3.0, n)).astype(np.float32)
        params = VGCParams(alpha=1.0, tau=0.25 if step % 2 else 0.0)
        assert_same_packet(backend.vgc_step(state, g, s, params), REFERENCE.vgc_step(ref_state, g, s, params))
        assert_same_state(state, ref_state)
        assert_same_packet(
            backend.strom_step(state, g, StromParams(0.5)),
            REFERENCE.strom_step(ref_state, g, StromParams(0.5)),
        )
        assert_same_state(state, ref_state)
    g[n - 3] = np.nan
    s[n - 10] = -2.0
    with pytest.raises(NonFiniteError) as want:
        REFERENCE.vgc_step(ref_state, g, s, VGCParams())
    with pytest.raises(NonFiniteError) as got:
        backend.vgc_step(state, g, s, VGCParams())
    assert str(got.value) == str(want.value)
    assert_same_state(state, ref_state)


# --------------------------------------------------------------------------------------
# vgc_step_scratch: vgc_step's results and errors; the state is unspecified after an error
# --------------------------------------------------------------------------------------


def _scratch_matches_vgc_step(backend, r, v, g, s, params, segment_id=3):
    """The scratch step on one copy, in place and into a separate ``out``, and the
    reference's vgc_step on another: the same packet, r and v (in ``out``), or the same
    error (class, name, segment, index and message); stepping into ``out`` never writes
    the state, not even on error."""
    ref_state, state = _states(r, v, segment_id)
    source, _ = _states(r, v, segment_id)
    out = SegmentState(segment_id + 1, np.full_like(r, 7.0), np.full_like(v, 7.0))
    try:
        want = REFERENCE.vgc_step(ref_state, g, s, params)
    except NonFiniteError as err:
        for kwargs in ({}, {"out": out}):
            with pytest.raises(NonFiniteError) as got:
                backend.vgc_step_scratch(source if kwargs else state, g, s, params, **kwargs)
            assert _error_facts(got.value) == _error_facts(err) and str(got.value) == str(err)
        assert source.r.tobytes() == r.tobytes() and source.v.tobytes() == v.tobytes()
        return
    assert_same_packet(backend.vgc_step_scratch(state, g, s, params), want)
    assert_same_state(state, ref_state)
    assert_same_packet(backend.vgc_step_scratch(source, g, s, params, out=out), want)
    assert_same_state(out, ref_state)
    assert source.r.tobytes() == r.tobytes() and source.v.tobytes() == v.tobytes()


def test_vgc_step_scratch_refuses_an_out_it_cannot_write_before_anything_else(backend):
    """out of another length, not a state, or overlapping the state, g or s: InputError
    naming out, even when g is bad too; nothing is written."""
    n = 16
    g = np.arange(n, dtype=np.float32)
    s = np.ones(n, np.float32)
    state = SegmentState(2, np.ones(n, np.float32), np.ones(n, np.float32))
    buf = np.zeros(2 * n, np.float32)
    bad_g = g.copy()
    bad_g[3] = np.nan
    z = np.zeros(n, np.float32)
    both = (g, bad_g)
    cases = [  # (out, s, the g of each call)
        (SegmentState.zeros(n + 1), s, both),
        ((z, z.copy()), s, both),
        (SegmentState(2, state.r, z), s, both),  # out.r is state.r
        (SegmentState(2, z, state.v[::-1]), s, both),  # out.v is state.v reversed
        (SegmentState(2, g, z), s, (g,)),  # out.r is g
        (SegmentState(2, z, buf[:n]), buf[n // 2 : n // 2 + n], both),  # out.v overlaps s
    ]
    for out, var, grads in cases:
        for grad in grads:
            before = [x.copy() for x in (state.r, state.v, g, s, buf)]
            with pytest.raises(InputError) as info:
                backend.vgc_step_scratch(state, grad, var, VGCParams(), out=out)
            assert info.value.name == "out", str(info.value)
            assert all(a.tobytes() == b.tobytes() for a, b in zip(before, (state.r, state.v, g, s, buf)))


def test_vgc_step_scratch_gives_vgc_steps_results_and_errors(backend):
    """Good cases (edge values included) and cases with bad values planted: the results
    or the error of the reference's vgc_step."""
    check_examples(
        backend, vgc_cases(_max_n(backend)), lambda case: _scratch_matches_vgc_step(backend, *case)
    )
    check_examples(
        backend, bad_cases(_max_n(backend)), lambda case: _scratch_matches_vgc_step(backend, *case)
    )


def test_vgc_step_scratch_on_strided_views_writes_the_views(backend):
    """r and v as every other element of a caller's buffers (split_segments-style views):
    the scratch step writes its results into those views, as vgc_step does."""
    rng = np.random.default_rng(3)
    n = 41 if backend.name in SIMULATED else 70_001
    g = rng.standard_normal(n, dtype=np.float32)
    s = g * g * np.float32(0.3)
    flat_r, flat_v = np.zeros(2 * n, np.float32), np.zeros(2 * n, np.float32)
    state = SegmentState(0, flat_r[::2], flat_v[::2])
    ref = SegmentState.zeros(n)
    for _ in range(2):
        assert_same_packet(
            backend.vgc_step_scratch(state, g, s, VGCParams()), REFERENCE.vgc_step(ref, g, s, VGCParams())
        )
        assert_same_state(state, ref)
    assert not flat_r[1::2].any() and not flat_v[1::2].any()
    out = SegmentState(0, np.zeros(2 * n, np.float32)[1::2], np.zeros(2 * n, np.float32)[1::2])
    want = REFERENCE.vgc_step(ref, g, s, VGCParams())
    assert_same_packet(backend.vgc_step_scratch(state, g, s, VGCParams(), out=out), want)
    assert_same_state(out, ref)


@st.composite
def chunked_cases(draw):
    """2 to 4 chunks of numba-cpu's one pass (2^16 elements) and a ragged end; each chunk's
    values, or each sub-block's (2048 elements), at a scale of its own (2^-40 .. 2^40), so
    that the running threshold of a chunk and the segment's differ and what a sub-block
    sends is often taken back; maybe bad values in a later chunk (after earlier chunks
    were written)."""
    from vgc_ref.backends.numba_cpu import CHUNK, SUB

    chunks = draw(st.integers(2, 4), label="chunks")
    n = chunks * CHUNK + draw(st.sampled_from([0, 1, 77, 2047, 2049]), label="ragged end")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    block = draw(st.sampled_from([CHUNK, SUB]), label="elements per scale")
    scale = np.repeat(2.0 ** rng.integers(-40, 41, n // block + 1), block)[:n]
    g = (rng.standard_normal(n) * scale).astype(np.float32)
    s = (g.astype(np.float64) ** 2 * rng.uniform(0.0, 1.5, n)).astype(np.float32)
    r = (rng.standard_normal(n) * scale * draw(st.sampled_from([0.0, 1.0]), label="r")).astype(np.float32)
    v = (r.astype(np.float64) ** 2 * rng.uniform(0.0, 1.0, n)).astype(np.float32)
    for _ in range(draw(st.integers(0, 2), label="bad values")):
        i = draw(st.integers(CHUNK, n - 1), label="bad index")
        kind = draw(st.sampled_from(BAD_KINDS), label="bad kind")
        if kind.startswith("g"):
            g[i] = np.nan
        elif kind.startswith("s"):
            s[i] = -1.0
        elif kind.startswith("r"):
            r[i], g[i] = F32_MAX, F32_MAX
        else:
            v[i], s[i] = F32_MAX, F32_MAX
    alpha, tau = draw(st.sampled_from([(1.0, 0.0), (2.0, 0.0), (1.0, 2.0**-30)]), label="alpha, tau")
    residual = draw(st.sampled_from(["feedback", "reset"]), label="residual")
    return r, v, g, s, VGCParams(alpha=alpha, tau=tau, residual=residual)


@settings(max_examples=30, deadline=None)
@given(case=chunked_cases())
def test_numba_scratch_step_over_chunks_of_their_own_scale(case):
    """numba-cpu's one-pass step over several chunks whose running thresholds differ from
    the segment's (the parallel path and the serial one): vgc_step's results or error."""
    numba_cpu = pytest.importorskip("vgc_ref.backends.numba_cpu")
    backend = registry.get_backend("numba-cpu")
    _scratch_matches_vgc_step(backend, *case)
    saved = numba_cpu.SERIAL_MAX
    numba_cpu.SERIAL_MAX = 1 << 30
    try:
        _scratch_matches_vgc_step(backend, *case)
    finally:
        numba_cpu.SERIAL_MAX = saved


def test_numba_scratch_step_reports_from_values_not_yet_written():
    """A chunk stops writing at its first bad sub-block and looks for the first bad index
    of each check from there: the part it already wrote holds r + g, and looking there
    again would add g twice. Here r = g = 1.5e38 early in a chunk (r + g = 3e38 is
    fine, 3e38 + g overflows) and v + s overflows later: the error must be the reference's
    v + s overflow, not an r + g overflow at the early index."""
    pytest.importorskip("vgc_ref.backends.numba_cpu")
    from vgc_ref.backends.numba_cpu import CHUNK

    n = 2 * CHUNK
    r, v, g, s = (np.zeros(n, np.float32) for _ in range(4))
    r[CHUNK + 10] = g[CHUNK + 10] = np.float32(1.5e38)
    v[CHUNK + 5000] = s[CHUNK + 5000] = F32_MAX
    _scratch_matches_vgc_step(registry.get_backend("numba-cpu"), r, v, g, s, VGCParams())


# --------------------------------------------------------------------------------------
# Decode and accumulate
# --------------------------------------------------------------------------------------


@st.composite
def message_sets(draw, max_n):
    """P messages of 1-3 segments each, every codec, from real steps."""
    n_ranks = draw(st.integers(1, 4), label="P")
    sizes = draw(st.lists(st.integers(0, max_n), min_size=1, max_size=3), label="sizes")
    messages = []
    for _ in range(n_ranks):
        packets = []
        for j, n in enumerate(sizes):
            codec = draw(st.sampled_from(["vgc", "strom", "dense"]), label="codec")
            g = draw(vectors(n, min_value=-(2.0**100), max_value=2.0**100), label="g")
            state = SegmentState.zeros(n, j)
            if codec == "vgc":
                packets.append(REFERENCE.vgc_step(state, g, np.abs(g) * np.float32(0.1), VGCParams()))
            elif codec == "strom":
                packets.append(REFERENCE.strom_step(state, g, StromParams(0.5)))
            else:
                packets.append(dense_packet(j, g))
        order = draw(st.permutations(range(len(sizes))), label="segment order")
        messages.append(encode_message([packets[k] for k in order]))
    return messages, sizes


def test_decode_accumulate_gives_the_reference_bits(backend):
    """Bit-identical g_hat to the reference, returned and written into ``out``."""
    check_examples(backend, message_sets(_max_n(backend) // 2), lambda case: _check_messages(backend, *case))


def _check_messages(backend, messages, sizes):
    want = REFERENCE.decode_accumulate(messages, sizes)
    got = backend.decode_accumulate(messages, sizes)
    out = [np.full(n, np.nan, np.float32) for n in sizes]
    got_out = backend.decode_accumulate(messages, sizes, out=out)
    for w, a, b, o in zip(want, got, got_out, out):
        np.testing.assert_array_equal(bits(a), bits(w))
        assert b is o
        np.testing.assert_array_equal(bits(o), bits(w))


def test_decode_accumulate_rejects_what_the_reference_rejects(backend):
    """A corrupted message: the same FormatError (field, offset, rank); out untouched."""
    g = np.array([1.0, -3.0, 0.5, 8.0], np.float32)
    good = encode_message([REFERENCE.strom_step(SegmentState.zeros(4), g, StromParams(0.5))])
    for position in (0, 5, 14, len(good) - 1, 30):
        bad = bytearray(good)
        bad[position] ^= 0x41
        out = [np.full(4, 7.0, np.float32)]
        with pytest.raises(FormatError) as want:
            REFERENCE.decode_accumulate([good, bytes(bad)], [4])
        with pytest.raises(FormatError) as got:
            backend.decode_accumulate([good, bytes(bad)], [4], out=out)
        assert (got.value.field, got.value.offset, got.value.rank) == (
            want.value.field,
            want.value.offset,
            want.value.rank,
        )
        np.testing.assert_array_equal(out[0], np.full(4, 7.0, np.float32))
    for args in (([], [4]), ([good], [5]), ([good], [4, 4])):
        with pytest.raises(Exception) as want:
            REFERENCE.decode_accumulate(*args)
        with pytest.raises(type(want.value)):
            backend.decode_accumulate(*args)


# --------------------------------------------------------------------------------------
# Dense-layer gradient and variance term
# --------------------------------------------------------------------------------------


def test_dense_grad_var_gives_the_reference_bits_and_agrees_with_per_sample(backend):
    """Bit-identical to the reference (the fixed order of docs/algorithm.md section 2, batches
    long enough that the order shows) and close to the per-sample computation."""
    batch = (
        st.integers(1, 9)
        if backend.name in SIMULATED
        else st.one_of(st.integers(1, 9), st.integers(100, 300))
    )
    shapes = st.tuples(batch, st.integers(0, 7), st.integers(0, 6), st.integers(0, 2**32 - 1))
    check_examples(backend, shapes, lambda case: _check_dense(backend, *case))


def _check_dense(backend, batch, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    delta = (rng.standard_normal((batch, n_out)) / batch).astype(np.float32)
    got = backend.dense_grad_var(x, delta)
    for a, ref, slow in zip(got, REFERENCE.dense_grad_var(x, delta), per_sample_dense_grad_var(x, delta)):
        assert a.dtype == np.float32 and a.shape == ref.shape
        np.testing.assert_array_equal(bits(a), bits(ref))
        np.testing.assert_allclose(a, slow, rtol=1e-5 * max(1, batch / 10), atol=1e-6)


def test_dense_grad_var_rejects_what_the_reference_rejects(backend):
    x = np.ones((3, 2), np.float32)
    for bad_x, bad_d in ((x.astype(np.float64), x), (x, np.ones((4, 2), np.float32)), (x[0], x)):
        with pytest.raises(InputError):
            backend.dense_grad_var(bad_x, bad_d)


@pytest.mark.gpu
def test_the_cuda_backend_runs_on_a_real_gpu():
    """Only with a GPU: the numba-cuda backend at a size the simulator cannot reach."""
    from numba import config

    if config.ENABLE_CUDASIM:
        pytest.skip("the CUDA simulator is on: no real GPU here")
    cuda_backend = _load("numba-cuda")
    n = (1 << 20) + 3
    rng = np.random.default_rng(1)
    ref_state, state = _states(np.zeros(n, np.float32), np.zeros(n, np.float32))
    for _ in range(3):
        g = rng.standard_normal(n, dtype=np.float32)
        s = (g * g * rng.uniform(0.0, 3.0, n)).astype(np.float32)
        assert_same_packet(
            cuda_backend.vgc_step(state, g, s, VGCParams()), REFERENCE.vgc_step(ref_state, g, s, VGCParams())
        )
        assert_same_state(state, ref_state)


# --------------------------------------------------------------------------------------
# numba-cpu's fast message check: exactly as strict as the reference decoder
# --------------------------------------------------------------------------------------

INTERESTING_U32 = st.one_of(
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from(
        [0, 1, 2, 15, 16, 31, 32, 0xFE, 0xFF, 0x100, 1 << 27, (1 << 27) + 1, 0x7F7FFFFF, 0x7F800000]
    ),
    st.sampled_from([0x80000000, 0xFF800000, 0xFFFFFFE0, 0xFFFFFFFF]),
)


def _reference_decode(message):
    from vgc_ref.encoding import decode_message

    try:
        return decode_message(message)
    except FormatError:
        return None


@st.composite
def damaged_messages(draw):
    """Valid messages, then: field patches (CRC fixed), byte flips, truncations or garbage."""
    messages, _ = draw(message_sets(24), label="messages")
    message = messages[0]
    how = draw(st.sampled_from(["none", "u32", "byte", "flip", "truncate", "garbage"]), label="damage")
    body = bytearray(message[:-4])
    if how == "garbage":
        return draw(st.binary(max_size=80), label="garbage")
    if how == "truncate":
        return message[: draw(st.integers(0, len(message)), label="length")]
    if how == "flip":
        changed = bytearray(message)
        changed[draw(st.integers(0, len(message) - 1), label="at")] ^= draw(st.integers(1, 255), label="mask")
        return bytes(changed)
    if how == "u32" and len(body) >= 4:
        at = draw(st.integers(0, (len(body) - 4) // 4), label="word") * 4
        body[at : at + 4] = draw(INTERESTING_U32, label="value").to_bytes(4, "little")
    elif how == "byte":
        body[draw(st.integers(0, len(body) - 1), label="at")] = draw(st.integers(0, 255), label="value")
    return bytes(body) + zlib.crc32(bytes(body)).to_bytes(4, "little")


@settings(max_examples=200, deadline=None)
@given(message=damaged_messages())
def test_numba_fast_decode_accepts_exactly_what_the_reference_accepts(message):
    """_fast_decode returns the reference's packets for a message it accepts, else None."""
    numba_cpu = pytest.importorskip("vgc_ref.backends.numba_cpu")
    want = _reference_decode(message)
    got = numba_cpu._fast_decode(message)
    assert (got is None) == (want is None)
    if want is not None:
        assert got == want


def test_vgc_step_without_s_is_an_input_error_after_gs_checks(backend):
    """s = None is refused as InputError("s") (None means "no variance" only for Strom);
    a bad g is still reported first, as for any other bad s (docs/conformance.md)."""
    state = SegmentState.zeros(3, segment_id=2)
    with pytest.raises(InputError) as err:
        backend.vgc_step(state, np.ones(3, np.float32), None, VGCParams(alpha=2.0))
    assert err.value.name == "s"
    with pytest.raises(NonFiniteError) as err:
        backend.vgc_step(state, np.array([1.0, np.nan, 1.0], np.float32), None, VGCParams(alpha=2.0))
    assert (err.value.name, err.value.segment, err.value.index) == ("g", 2, 1)
    assert state.r.tolist() == [0.0] * 3 and state.v.tolist() == [0.0] * 3


def test_decode_accumulate_of_no_messages_names_messages(backend):
    with pytest.raises(InputError) as err:
        backend.decode_accumulate([], [0])
    assert err.value.name == "messages"
    with pytest.raises(InputError) as err:
        backend.decode_accumulate(iter(()), [])
    assert err.value.name == "messages"


# --------------------------------------------------------------------------------------
# encode_message: the reference's bytes, or the reference's error, on every backend
# --------------------------------------------------------------------------------------


@st.composite
def packet_lists(draw):
    """The packets of a valid message, then maybe one damage: a word, param, n or codec
    patched, a segment id repeated, or a field of another type."""
    from dataclasses import replace

    from vgc_ref.encoding import decode_message

    messages, _ = draw(message_sets(24), label="messages")
    packets = list(decode_message(messages[0]))
    how = draw(st.sampled_from(["none", "word", "param", "n", "codec", "duplicate", "type"]), label="damage")
    j = draw(st.integers(0, len(packets) - 1), label="packet")
    p = packets[j]
    if how == "word" and p.count:
        words = p.words.copy()
        words[draw(st.integers(0, p.count - 1), label="at")] = draw(INTERESTING_U32, label="value")
        packets[j] = replace(p, words=words)
    elif how in ("param", "n"):
        packets[j] = replace(p, **{how: draw(INTERESTING_U32, label=how)})
    elif how == "codec":
        other = draw(st.sampled_from([c for c in Codec if c != p.codec]), label="codec")
        packets[j] = replace(p, codec=other)
    elif how == "duplicate" and len(packets) > 1:
        packets[j] = replace(p, segment_id=packets[(j + 1) % len(packets)].segment_id)
    elif how == "type":
        value = draw(st.sampled_from([np.uint32(p.n), True, -1, float(p.n)]), label="n as")
        packets[j] = replace(p, n=value)
    return packets


def _encode_outcome(encode, packets):
    try:
        return encode(packets)
    except InputError as err:
        return ("InputError", str(err))


def test_encode_message_gives_the_reference_bytes_or_error(backend):
    """Valid packets encode to the reference's bytes; a damaged list raises the
    reference's InputError, message included (numba-cpu checks the content rules with
    the decoder's kernel and hands anything it does not pass to the reference)."""

    def check(packets):
        want = _encode_outcome(encode_message, packets)
        assert _encode_outcome(backend.encode_message, packets) == want
        assert _encode_outcome(backend.encode_message, tuple(packets)) == want

    check_examples(backend, packet_lists(), check)
