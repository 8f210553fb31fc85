"""numba-cpu's two paths: small segments on the calling thread, large ones in parallel regions.

Both must give the reference's bytes and bits; the parallel regions must survive several
Python threads at once, also under Numba's workqueue threading layer (which aborts the
process on concurrent entry unless the backend serializes them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import vectors
from test_backends import assert_same_packet, assert_same_state, same_outcome, vgc_cases

from vgc_ref import SegmentState, StromParams, VGCParams, encode_message
from vgc_ref import backends as registry
from vgc_ref.backends import numba_cpu

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = registry.get_backend("numpy")
BACKEND = registry.get_backend("numba-cpu")


class CountingLock:
    """Stands in for the parallel kernels' lock and counts how often it is taken."""

    def __init__(self) -> None:
        self.taken = 0
        self._lock = threading.Lock()

    def __enter__(self):
        self._lock.acquire()
        self.taken += 1
        return self

    def __exit__(self, *exc):
        self._lock.release()


@pytest.fixture(params=["serial", "parallel"])
def path(request, monkeypatch) -> str:
    """Force one path for every segment size: SERIAL_MAX huge (serial) or -1 (parallel)."""
    monkeypatch.setattr(numba_cpu, "SERIAL_MAX", 1 << 30 if request.param == "serial" else -1)
    return request.param


def _states(r, v):
    return SegmentState(0, r.copy(), v.copy()), SegmentState(0, r.copy(), v.copy())


def test_vgc_step_equals_the_reference_on_either_path(path):
    @given(vgc_cases(300))
    def check(case):
        r, v, g, s, params = case
        ref_state, state = _states(r, v)
        result = same_outcome(
            lambda: REFERENCE.vgc_step(ref_state, g, s, params), lambda: BACKEND.vgc_step(state, g, s, params)
        )
        if result is not None:
            assert_same_packet(result[1], result[0])
        assert_same_state(state, ref_state)

    check()


def test_strom_step_and_aggregation_equal_the_reference_on_either_path(path):
    @given(st.data())
    def check(data):
        n = data.draw(st.integers(0, 300), label="n")
        r = data.draw(vectors(n), label="r")
        g = data.draw(vectors(n), label="g")
        ref_state, state = _states(r, np.zeros(n, np.float32))
        result = same_outcome(
            lambda: REFERENCE.strom_step(ref_state, g, StromParams(1.0)),
            lambda: BACKEND.strom_step(state, g, StromParams(1.0)),
        )
        assert_same_state(state, ref_state)
        if result is not None:
            assert_same_packet(result[1], result[0])
            messages = [encode_message([result[0]])] * 3
            want = REFERENCE.decode_accumulate(messages, [n])
            got = BACKEND.decode_accumulate(messages, [n])
            np.testing.assert_array_equal(want[0].view(np.uint32), got[0].view(np.uint32))

    check()


@given(st.data())
def test_accumulate_divides_sparse_and_dense_chunks_as_the_reference(data):
    """One segment of two chunks, P = 3 (x / 3 is inexact, so a skipped or repeated
    division shows): chunk 0 holds fewer words than 1 per 2^DIVIDE_ALL_SHIFT elements
    (only its touched elements are divided), chunk 1 more (the whole chunk is)."""
    chunk = numba_cpu.CHUNK
    n = 2 * chunk
    limit = chunk >> numba_cpu.DIVIDE_ALL_SHIFT
    messages = []
    for w in range(3):
        sparse = data.draw(st.integers(1, limit - 1), label=f"rank {w}: sent in chunk 0")
        dense = data.draw(st.integers(limit, 4 * limit), label=f"rank {w}: sent in chunk 1")
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
        g = np.zeros(n, np.float32)
        sent = np.concatenate(
            [rng.choice(chunk, sparse, replace=False), chunk + rng.choice(chunk, dense, replace=False)]
        )
        g[sent] = rng.uniform(1, 8, sent.size).astype(np.float32) * rng.choice([-1, 1], sent.size)
        packet = REFERENCE.vgc_step(SegmentState.zeros(n), g, np.zeros(n, np.float32), VGCParams())
        messages.append(encode_message([packet]))
    want = REFERENCE.decode_accumulate(messages, [n])[0]
    got = BACKEND.decode_accumulate(messages, [n])[0]
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_small_segments_take_no_parallel_region_and_large_ones_do(monkeypatch):
    lock = CountingLock()
    monkeypatch.setattr(numba_cpu, "_PARALLEL_LOCK", lock)
    rng = np.random.default_rng(1)
    for n, parallel in ((1000, False), (numba_cpu.SERIAL_MAX, False), (numba_cpu.SERIAL_MAX + 1, True)):
        g = rng.standard_normal(n, dtype=np.float32)
        before = lock.taken
        packet = BACKEND.vgc_step(SegmentState.zeros(n), g, np.abs(g), VGCParams())
        BACKEND.decode_accumulate([encode_message([packet])], [n])
        assert (lock.taken > before) == parallel, (n, lock.taken - before)


def test_threads_stepping_at_once_get_the_sequential_results():
    """Four Python threads, each its own state, small and large segments: the same bits as one thread."""
    rng = np.random.default_rng(2)
    sizes = [1000, numba_cpu.SERIAL_MAX + 4097]
    inputs = [(rng.standard_normal(n, dtype=np.float32), rng.random(n, dtype=np.float32)) for n in sizes]

    def run(out, k):
        states = [SegmentState.zeros(n) for n in sizes]
        words = []
        for _ in range(6):
            for st_, (g, s) in zip(states, inputs):
                words.append(BACKEND.vgc_step(st_, g * np.float32(k + 1), s, VGCParams()).words.copy())
        out[k] = (words, [(x.r.copy(), x.v.copy()) for x in states])

    alone: dict = {}
    for k in range(4):
        run(alone, k)
    together: dict = {}
    threads = [threading.Thread(target=run, args=(together, k)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        for a, b in zip(alone[k][0], together[k][0]):
            np.testing.assert_array_equal(a, b)
        for (r1, v1), (r2, v2) in zip(alone[k][1], together[k][1]):
            np.testing.assert_array_equal(r1.view(np.uint32), r2.view(np.uint32))
            np.testing.assert_array_equal(v1.view(np.uint32), v2.view(np.uint32))


THREADS_SCRIPT = """
import threading, numpy as np
from vgc_ref import SegmentState, VGCParams
from vgc_ref.backends import get_backend, numba_cpu
b = get_backend("numba-cpu")
n = 2 * numba_cpu.SERIAL_MAX + 1
g = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
def work():
    st = SegmentState.zeros(n)
    for _ in range(20):
        b.vgc_step(st, g, np.abs(g), VGCParams())
ts = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
import numba; print("layer", numba.threading_layer())
"""


def test_threads_under_the_workqueue_layer_do_not_abort():
    """Before the lock, this process ended with SIGABRT ("Concurrent access has been detected")."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NUMBA_THREADING_LAYER": "workqueue",
        "NUMBA_NUM_THREADS": "2",
    }
    done = subprocess.run(
        [sys.executable, "-c", THREADS_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "layer workqueue" in done.stdout
