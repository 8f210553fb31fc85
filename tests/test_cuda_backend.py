"""The numba-cuda backend against the reference: device-resident state, device arrays, dense.

Every test here runs twice where it can: at a small size on the CUDA simulator (CI has
no GPU; there TPB = 8 and 2 blocks, so every grid-stride loop wraps), and at a size
only a GPU reaches, marked ``gpu`` and skipped on the simulator.
``test_the_gpu_block_size_on_the_simulator`` runs the simulator at the GPU's TPB = 256.

The dense layer is compared bit for bit with the fixed-order sums (b = 0 .. B-1 in
order, one rounded float32 operation at a time) transcribed into NumPy below.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import vectors

from vgc_ref import (
    AccumulatorOverflowError,
    Compressor,
    HyperparameterError,
    InputError,
    NegativeVarianceError,
    NonFiniteError,
    SegmentState,
    StromParams,
    VGCParams,
    dense_packet,
)
from vgc_ref import backends as registry
from vgc_ref.encoding import encode_message

try:
    from vgc_ref.backends import numba_cuda as nc
except ImportError as err:  # no GPU and no simulator
    pytest.skip(f"numba-cuda backend cannot run here: {err}", allow_module_level=True)

from numba import cuda

REFERENCE = registry.get_backend("numpy")
ROOT = Path(__file__).resolve().parents[1]
ON_SIMULATOR = nc.SIMULATOR
#: (n of a segment, (B, n_in, n_out) of a dense layer) per scale.
SCALES = [
    pytest.param((37, (5, 5, 7)), id="small"),
    pytest.param(
        ((1 << 22) + 3, (64, 300, 257)),
        id="gpu-size",
        marks=[pytest.mark.gpu, pytest.mark.skipif(ON_SIMULATOR, reason="the CUDA simulator is on: no GPU")],
    ),
]
METHODS = {
    "vgc": VGCParams(),
    "vgc-reset": VGCParams(alpha=1.0, zeta=0.5, residual="reset"),
    "hybrid": VGCParams(alpha=2.0, tau=0.5),
    "strom": StromParams(tau=0.75),
}


def bits(x) -> np.ndarray:
    return np.asarray(x, np.float32).view(np.uint32)


def host(x) -> np.ndarray:
    return x.copy_to_host() if nc.is_device_array(x) else np.asarray(x)


def assert_same_state(device_or_host, ref: SegmentState) -> None:
    st = device_or_host.to_host() if isinstance(device_or_host, nc.DeviceSegmentState) else device_or_host
    np.testing.assert_array_equal(bits(st.r), bits(ref.r))
    np.testing.assert_array_equal(bits(st.v), bits(ref.v))


def assert_same_packet(p, q) -> None:
    assert p == q
    assert encode_message([p]) == encode_message([q])


def step(backend, params, state, g, s):
    if isinstance(params, StromParams):
        return backend.strom_step(state, g, params)
    return backend.vgc_step(state, g, s, params)


def inputs(rng, n, scale=1.0):
    g = (rng.standard_normal(n) * scale).astype(np.float32)
    s = (g * g * rng.uniform(0.0, 3.0, n)).astype(np.float32)
    return g, s


# --------------------------------------------------------------------------------------
# Steps on a device-resident state
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", SCALES)
@pytest.mark.parametrize("method", list(METHODS))
def test_device_state_steps_match_the_reference(method, sizes):
    """r, v on the device, g and s device arrays: the reference's packets and state, step after step."""
    n = sizes[0]
    params = METHODS[method]
    rng = np.random.default_rng(7)
    ref = SegmentState.zeros(n, 4)
    dev = nc.DeviceSegmentState.zeros(n, 4)
    host_state = SegmentState.zeros(n, 4)
    for _ in range(3):
        g, s = inputs(rng, n)
        want = step(REFERENCE, params, ref, g, s)
        assert_same_packet(step(nc, params, dev, cuda.to_device(g), cuda.to_device(s)), want)
        assert_same_packet(step(nc, params, host_state, g, s), want)
        assert_same_state(dev, ref)
        assert_same_state(host_state, ref)


@settings(max_examples=10, deadline=None)
@given(
    data=st.data(),
    n=st.integers(0, 20),
    method=st.sampled_from(list(METHODS)),
)
def test_device_path_matches_the_reference_on_edge_values(data, n, method):
    """Device state and device inputs on drawn values (edges included) over two steps."""
    params = METHODS[method]
    ref = SegmentState(
        1,
        data.draw(vectors(n, -(2.0**100), 2.0**100), label="r"),
        data.draw(vectors(n, 0.0, 2.0**100), label="v"),
    )
    dev = nc.DeviceSegmentState.from_host(ref)
    for _ in range(2):
        g = data.draw(vectors(n, -(2.0**100), 2.0**100), label="g")
        s = data.draw(vectors(n, 0.0, 2.0**100), label="s")
        try:
            want = step(REFERENCE, params, ref, g, s)
        except (NonFiniteError, InputError) as err:
            before = dev.to_host()
            with pytest.raises(type(err)) as got:
                step(nc, params, dev, cuda.to_device(g), cuda.to_device(s))
            assert str(got.value) == str(err)
            assert_same_state(dev, before)
            return
        assert_same_packet(step(nc, params, dev, cuda.to_device(g), cuda.to_device(s)), want)
        assert_same_state(dev, ref)


class _CountLaunches:
    """Counts launches of one kernel (wraps its [grid, block] launch)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.launches = 0

    def __getitem__(self, config):
        self.launches += 1
        return self.kernel[config]


@pytest.mark.parametrize("method", ["vgc", "strom"])
def test_a_check_before_the_step_is_the_steps_only_scan(method, monkeypatch):
    """check_step then a step on the same device state and arrays scans once, with the same results."""
    n = 29
    params = METHODS[method]
    rng = np.random.default_rng(3)
    ref = SegmentState.zeros(n)
    dev = nc.DeviceSegmentState.zeros(n)
    counter = _CountLaunches(nc.kern.scan_kernel)
    monkeypatch.setattr(nc.kern, "scan_kernel", counter)
    for k in range(3):
        g, s = inputs(rng, n)
        d_g, d_s = cuda.to_device(g), cuda.to_device(s)
        d_s_or_none = None if method == "strom" else d_s
        counter.launches = 0
        nc.check_step(dev, d_g, d_s_or_none)
        assert_same_packet(step(nc, params, dev, d_g, d_s), step(REFERENCE, params, ref, g, s))
        assert_same_state(dev, ref)
        # VGC's first check cannot know alpha and tau yet (they decide E): it scans again.
        assert counter.launches == (2 if method == "vgc" and k == 0 else 1)
    # Other arrays than the checked ones: the step scans on its own.
    g, s = inputs(rng, n)
    nc.check_step(dev, cuda.to_device(g), None if method == "strom" else cuda.to_device(s))
    counter.launches = 0
    assert_same_packet(
        step(nc, params, dev, cuda.to_device(g), cuda.to_device(s)), step(REFERENCE, params, ref, g, s)
    )
    assert counter.launches == 1


# --------------------------------------------------------------------------------------
# Compressor on device states
# --------------------------------------------------------------------------------------

#: Segment sizes of a Compressor per scale (an empty segment included).
COMPRESSOR_SCALES = [
    pytest.param([5, 0, 19], id="small"),
    pytest.param(
        [(1 << 21) + 5, 0, 1000, 1 << 18],
        id="gpu-size",
        marks=[pytest.mark.gpu, pytest.mark.skipif(ON_SIMULATOR, reason="the CUDA simulator is on: no GPU")],
    ),
]
COMPRESSOR_METHODS = {
    "vgc": {"alpha": 1.0, "zeta": 0.9},
    "hybrid": {"tau": 0.5},
    "strom": {"tau": 0.75},
}


@pytest.mark.parametrize("sizes", COMPRESSOR_SCALES)
@pytest.mark.parametrize("inputs_on", ["host", "device"])
@pytest.mark.parametrize("method", list(COMPRESSOR_METHODS))
def test_compressor_on_device_states_gives_the_references_messages(method, inputs_on, sizes):
    """Compressor(backend="numba-cuda") keeps r, v on the device; its messages equal numpy's byte for byte."""
    kw = COMPRESSOR_METHODS[method]
    ref = Compressor(sizes, method, backend="numpy", **kw)
    comp = Compressor(sizes, method, backend="numba-cuda", **kw)
    assert comp.device_state and all(isinstance(st, nc.DeviceSegmentState) for st in comp.states)
    rng = np.random.default_rng(13)
    for _ in range(3):
        pairs = [inputs(rng, n) for n in sizes]
        g = [a for a, _ in pairs]
        s = [b for _, b in pairs] if method != "strom" else None
        want = ref.message(g, s)
        if inputs_on == "device":
            g = [cuda.to_device(a) for a in g]
            s = [cuda.to_device(b) for b in s] if s is not None else None
        assert comp.message(g, s) == want
        for got, expected in zip(comp.host_states(), ref.states):
            assert got.segment_id == expected.segment_id
            assert_same_state(got, expected)


def test_compressor_device_state_errors_leave_every_segment_unchanged():
    """A bad value in the last segment: the reference's error, and no segment's r, v changed."""
    sizes = [6, 9]
    ref = Compressor(sizes, "vgc", backend="numpy")
    comp = Compressor(sizes, "vgc", backend="numba-cuda")
    rng = np.random.default_rng(4)
    g = [inputs(rng, n)[0] for n in sizes]
    s = [inputs(rng, n)[1] for n in sizes]
    assert comp.message(g, s) == ref.message(g, s)
    before = comp.host_states()
    g[1][7] = np.nan
    with pytest.raises(NonFiniteError) as want:
        ref.compress(g, s)
    with pytest.raises(NonFiniteError) as got:
        comp.compress([cuda.to_device(x) for x in g], [cuda.to_device(x) for x in s])
    assert str(got.value) == str(want.value)
    for now, old in zip(comp.host_states(), before):
        assert_same_state(now, old)


def test_compressor_states_round_trip_through_the_host():
    """host_states, then load_states into a fresh device Compressor: the next messages are the same."""
    sizes = [7, 12]
    rng = np.random.default_rng(8)
    comp = Compressor(sizes, "vgc", backend="numba-cuda")
    ref = Compressor(sizes, "vgc", backend="numpy")
    g = [inputs(rng, n)[0] for n in sizes]
    s = [inputs(rng, n)[1] for n in sizes]
    assert comp.message(g, s) == ref.message(g, s)
    restored = Compressor(sizes, "vgc", backend="numba-cuda")
    restored.load_states(comp.host_states())
    assert all(isinstance(st, nc.DeviceSegmentState) for st in restored.states)
    assert restored.message(g, s) == comp.message(g, s) == ref.message(g, s)
    with pytest.raises(InputError, match=r"states\[1\].*must be segment 1 of length 12"):
        restored.load_states([SegmentState.zeros(7, 0), SegmentState.zeros(11, 1)])
    with pytest.raises(InputError, match="must hold one per segment"):
        restored.load_states(ref.host_states()[:1])
    for now, want in zip(restored.host_states(), ref.states):
        assert_same_state(now, want)


def test_compressor_device_state_is_chosen_by_backend_and_method():
    """Default on for numba-cuda's vgc/hybrid/strom; host states otherwise; True elsewhere refused."""
    assert not Compressor([4], "vgc", backend="numba-cuda", device_state=False).device_state
    assert not Compressor([4], "vgc", backend="numpy").device_state
    for method in ("none", "topk"):
        comp = Compressor([4], method, backend="numba-cuda")
        assert not comp.device_state and isinstance(comp.states[0], SegmentState)
        g = np.arange(4, dtype=np.float32)
        want = Compressor([4], method, backend="numpy").message([g])
        assert comp.message([cuda.to_device(g)]) == want
    for backend, method in (("numpy", "vgc"), ("numba-cuda", "topk")):
        with pytest.raises(HyperparameterError, match="device_state"):
            Compressor([4], method, backend=backend, device_state=True)


# --------------------------------------------------------------------------------------
# Errors, subnormals, the k boundary
# --------------------------------------------------------------------------------------


def _bad_inputs(which, n):
    """State and inputs whose first problem (two indices, lowest wins) is ``which``."""
    rng = np.random.default_rng(11)
    g, s = inputs(rng, n)
    r = np.zeros(n, np.float32)
    v = np.zeros(n, np.float32)
    for i in (n - 2, 5):
        if which == "g":
            g[i] = np.inf
        elif which == "s":
            s[i] = np.nan
        elif which == "s<0":
            s[i] = -1.0
        elif which == "r+g":
            r[i], g[i] = 3e38, 3e38
        elif which == "v+s":
            v[i], s[i] = 3e38, 3e38
    return SegmentState(2, r, v), g, s


ERRORS = {
    "g": NonFiniteError,
    "s": NonFiniteError,
    "s<0": NegativeVarianceError,
    "r+g": AccumulatorOverflowError,
    "v+s": AccumulatorOverflowError,
}


@pytest.mark.parametrize("sizes", SCALES)
@pytest.mark.parametrize("which", list(ERRORS))
@pytest.mark.parametrize("where", ["host", "device"])
def test_errors_are_the_references_and_leave_the_state_unchanged(which, where, sizes):
    """Same class and message (lowest index) from check_step and the step; r and v as before."""
    n = sizes[0]
    ref, g, s = _bad_inputs(which, n)
    state = ref.copy() if where == "host" else nc.DeviceSegmentState.from_host(ref)
    before = ref.copy()
    args = (g, s) if where == "host" else (cuda.to_device(g), cuda.to_device(s))
    with pytest.raises(ERRORS[which]) as want:
        REFERENCE.vgc_step(ref, g, s, VGCParams())
    for call in (lambda: nc.check_step(state, *args), lambda: nc.vgc_step(state, *args, VGCParams())):
        with pytest.raises(ERRORS[which]) as got:
            call()
        assert str(got.value) == str(want.value)
        assert_same_state(state, before)
    if which in ("g", "r+g"):
        with pytest.raises(ERRORS[which]) as got:
            nc.strom_step(state, args[0], StromParams(0.5))
        assert str(got.value) == str(want.value)
        assert_same_state(state, before)


def test_a_malformed_device_s_loses_to_a_non_finite_g():
    """As in the reference: g's values are checked before s's length."""
    ref, g, s = _bad_inputs("g", 20)
    dev = nc.DeviceSegmentState.from_host(ref)
    with pytest.raises(NonFiniteError) as want:
        REFERENCE.vgc_step(ref, g, s[:-1], VGCParams())
    with pytest.raises(NonFiniteError) as got:
        nc.vgc_step(dev, cuda.to_device(g), cuda.to_device(s[:-1]), VGCParams())
    assert str(got.value) == str(want.value)
    g[:] = 1.0
    with pytest.raises(InputError, match="length 19"):
        nc.vgc_step(dev, cuda.to_device(g), cuda.to_device(s[:-1]), VGCParams())


def test_device_arrays_of_the_wrong_kind_are_rejected():
    """float64, 2-D, wrong length and strided device arrays: InputError naming the array."""
    dev = nc.DeviceSegmentState.zeros(8)
    ok = cuda.to_device(np.zeros(8, np.float32))
    for bad, what in (
        (cuda.to_device(np.zeros(8)), "dtype float64"),
        (cuda.to_device(np.zeros((2, 4), np.float32)), "shape"),
        (cuda.to_device(np.zeros(9, np.float32)), "length 9"),
        (cuda.to_device(np.zeros(16, np.float32))[::2], "strided"),
    ):
        with pytest.raises(InputError, match=what):
            nc.vgc_step(dev, bad, ok, VGCParams())
        with pytest.raises(InputError, match=what):
            nc.vgc_step(dev, ok, bad, VGCParams())
    assert_same_state(dev, SegmentState.zeros(8))


@pytest.mark.parametrize("sizes", SCALES)
@pytest.mark.parametrize("where", ["host", "device"])
def test_subnormals_are_kept_not_flushed(where, sizes):
    """Subnormal g and r + g stay subnormal in r (no flush to zero); they are never sent."""
    n = sizes[0]
    rng = np.random.default_rng(5)
    tiny = np.float32(2.0**-140)  # subnormal
    g = (rng.integers(-3, 4, n) * tiny).astype(np.float32)
    g[0] = 1.0  # one normal value, so that E > 0
    s = np.zeros(n, np.float32)
    ref = SegmentState.zeros(n)
    state = SegmentState.zeros(n) if where == "host" else nc.DeviceSegmentState.zeros(n)
    for _ in range(2):
        args = (g, s) if where == "host" else (cuda.to_device(g), cuda.to_device(s))
        assert_same_packet(nc.vgc_step(state, *args, VGCParams()), REFERENCE.vgc_step(ref, g, s, VGCParams()))
        assert_same_state(state, ref)
    assert np.count_nonzero(ref.r) > 0 and np.all(np.abs(ref.r) < np.float32(2.0**-126))


@pytest.mark.parametrize("sizes", SCALES)
def test_the_k_boundary(sizes):
    """|r| just inside and just outside k = 15 below the largest: sent or kept as the reference does."""
    n = sizes[0]
    largest = np.float32(1.0)
    near = [2.0**-15, 2.0**-15 * 0.70710677, 2.0**-15 * 0.7071068, 2.0**-16, 2.0**-15 * 1.5]
    g = np.zeros(n, np.float32)
    g[n - 1] = largest
    for j, x in enumerate(near):
        g[(j * 7) % (n - 1)] = np.float32(x) * (1 if j % 2 else -1)
    s = np.zeros(n, np.float32)
    ref = SegmentState.zeros(n)
    dev = nc.DeviceSegmentState.zeros(n)
    want = REFERENCE.vgc_step(ref, g, s, VGCParams())
    assert_same_packet(nc.vgc_step(dev, cuda.to_device(g), cuda.to_device(s), VGCParams()), want)
    assert_same_state(dev, ref)
    assert 1 < want.count < len(near) + 1  # some near the boundary went, some stayed


# --------------------------------------------------------------------------------------
# Decode and accumulate
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", SCALES)
@pytest.mark.parametrize("into", ["new", "host out", "device out"])
def test_decode_accumulate_matches_the_reference(into, sizes):
    """P = 4 ranks (VGC, hybrid, Strom, dense) over two segments; g_hat bit for bit."""
    n = sizes[0]
    seg_sizes = [n, 13]
    rng = np.random.default_rng(9)
    messages = []
    for rank, params in enumerate([METHODS["vgc"], METHODS["hybrid"], METHODS["strom"], None]):
        packets = []
        for j, m in enumerate(seg_sizes):
            g, s = inputs(rng, m, scale=rank + 1)
            if params is None:
                packets.append(dense_packet(j, g))
            else:
                packets.append(step(REFERENCE, params, SegmentState.zeros(m, j), g, s))
        messages.append(encode_message(packets))
    want = REFERENCE.decode_accumulate(messages, seg_sizes)
    if into == "new":
        got = nc.decode_accumulate(messages, seg_sizes)
    elif into == "host out":
        out = [np.full(m, np.nan, np.float32) for m in seg_sizes]
        got = nc.decode_accumulate(messages, seg_sizes, out)
        assert all(a is b for a, b in zip(got, out))
    else:
        out = [cuda.to_device(np.full(m, np.nan, np.float32)) for m in seg_sizes]
        got = nc.decode_accumulate(messages, seg_sizes, out)
        assert all(a is b for a, b in zip(got, out))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(bits(host(a)), bits(b))


def test_decode_rejects_a_wrong_device_out_before_writing():
    """A device out of the wrong length: InputError, and the other segment's out untouched."""
    g = np.ones(6, np.float32)
    messages = [encode_message([dense_packet(0, g), dense_packet(1, g)])]
    first = cuda.to_device(np.full(6, 7.0, np.float32))
    with pytest.raises(InputError, match="out\\[1\\]"):
        nc.decode_accumulate(messages, [6, 6], [first, cuda.to_device(np.zeros(5, np.float32))])
    np.testing.assert_array_equal(first.copy_to_host(), np.full(6, 7.0, np.float32))


# --------------------------------------------------------------------------------------
# The dense layer: the fixed-order sums
# --------------------------------------------------------------------------------------


def fixed_order_dense(x: np.ndarray, delta: np.ndarray):
    """g_W, s_W, g_b, s_b summed over b = 0 .. B-1 in order from +0.0, one rounding per op.

    NumPy's float32 elementwise multiply and add round each result once and never fuse.
    """
    n_in, n_out = x.shape[1], delta.shape[1]
    g_w = np.zeros((n_in, n_out), np.float32)
    s_w = np.zeros((n_in, n_out), np.float32)
    g_b = np.zeros(n_out, np.float32)
    s_b = np.zeros(n_out, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for b in range(x.shape[0]):
            xb, db = x[b], delta[b]
            g_w = g_w + np.multiply.outer(xb, db)
            s_w = s_w + np.multiply.outer(xb * xb, db * db)
            g_b = g_b + db
            s_b = s_b + db * db
    return g_w, s_w, g_b, s_b


def assert_dense_exact(x, delta) -> None:
    for got, want in zip(nc.dense_grad_var(x, delta), fixed_order_dense(x, delta)):
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(bits(got), bits(want))


@pytest.mark.parametrize("sizes", SCALES)
def test_dense_grad_var_is_the_fixed_order_sum(sizes):
    """Random x and D: every output bit-identical to the in-order float32 sums."""
    batch, n_in, n_out = sizes[1]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    delta = (rng.standard_normal((batch, n_out)) * 1e-3).astype(np.float32)
    assert_dense_exact(x, delta)


@settings(max_examples=15, deadline=None)
@given(
    data=st.data(),
    batch=st.integers(1, 5),
    n_in=st.integers(1, 5),
    n_out=st.integers(1, 5),
)
def test_dense_grad_var_is_the_fixed_order_sum_on_edge_values(data, batch, n_in, n_out):
    """Edge values (signed zeros, subnormals, large values): still bit for bit."""
    x = np.stack([data.draw(vectors(n_in, -(2.0**60), 2.0**60), label="x row") for _ in range(batch)])
    delta = np.stack([data.draw(vectors(n_out, -(2.0**60), 2.0**60), label="D row") for _ in range(batch)])
    assert_dense_exact(x, delta)


def test_dense_signed_zeros_sum_to_plus_zero():
    """+0.0 (+) -0.0 = +0.0: a column of negative products of zero starts from +0.0."""
    x = np.zeros((3, 2), np.float32)
    delta = -np.ones((3, 2), np.float32)
    g_w, s_w, _, _ = nc.dense_grad_var(x, delta)
    assert not np.signbit(g_w).any() and not np.signbit(s_w).any()
    assert_dense_exact(x, delta)


# --------------------------------------------------------------------------------------
# The GPU's block size on the simulator
# --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not ON_SIMULATOR, reason="a GPU runs TPB = 256 in every other test")
def test_the_gpu_block_size_on_the_simulator():
    """TPB = 256 (VGC_CUDA_TPB), 2 blocks, n = 700: every loop wraps; all operations still exact."""
    script = ROOT / "tests" / "cuda_block_size_check.py"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "VGC_CUDA_TPB": "256"}
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert "TPB 256: all equal" in proc.stdout


def test_the_device_benchmark_rows_run_and_check_their_results():
    """vgc_ref.bench's device-resident rows at a tiny size (timings meaningless here)."""
    from vgc_ref.backends.cuda_bench import cuda_rows

    rows = cuda_rows(48, 1, REFERENCE, dense=(3, 4, 5))
    ops = [r["op"] for r in rows]
    assert ops[0].startswith("device copy") and any(op.startswith("dense_grad_var") for op in ops)
    measured = [r for r in rows if "hbm_bytes_per_element" in r]
    assert [r["op"].split()[0] for r in measured] == ["vgc_step", "hybrid", "strom_step", "decode_accumulate"]
    assert all(r["checked"] for r in measured)
    assert all(r["hbm_bytes_per_element"] >= 4 for r in measured)


def test_device_state_copy_is_independent_and_equal():
    """DeviceSegmentState.copy() copies device to device: the same bits and segment id,
    and stepping the copy leaves the original as it was."""
    rng = np.random.default_rng(11)
    host = SegmentState(
        4, rng.standard_normal(37).astype(np.float32), np.abs(rng.standard_normal(37)).astype(np.float32)
    )
    original = nc.DeviceSegmentState.from_host(host)
    twin = original.copy()
    assert twin.segment_id == 4 and twin.r is not original.r and twin.v is not original.v
    for a, b in ((twin.to_host().r, host.r), (twin.to_host().v, host.v)):
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    g = rng.standard_normal(37).astype(np.float32)
    nc.vgc_step(twin, g, g * g, VGCParams())
    after = original.to_host()
    np.testing.assert_array_equal(after.r.view(np.uint32), host.r.view(np.uint32))
    np.testing.assert_array_equal(after.v.view(np.uint32), host.v.view(np.uint32))
