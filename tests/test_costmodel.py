"""The cost model: formulas by hand, the break-even bandwidth, the CLI."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from vgc_ref import HyperparameterError
from vgc_ref.costmodel import Workload, allgather_time, allreduce_time, main, parse_bandwidth, predict


def test_ring_formulas_by_hand():
    # P = 4, 4 MB over 1 GB/s with 1 ms latency: 6 ms latency + 2 * 3/4 * 4 ms = 12 ms
    assert allreduce_time(4e6, 4, 1e9, 1e-3) == pytest.approx(6e-3 + 6e-3)
    # allgather of 1 kB messages: 3 ms latency + 3 us transfer
    assert allgather_time(1e3, 4, 1e9, 1e-3) == pytest.approx(3e-3 + 3e-6)
    assert allreduce_time(4e6, 1, 1e9, 1e-3) == 0.0


def test_prediction_adds_up():
    w = Workload(n_params=10**6, workers=4, bandwidth=1e9, latency=0.0, ratio=100.0, compute=0.01)
    p = predict(w)
    assert p.dense_step == pytest.approx(w.compute + 2 * 3 / 4 * 4e6 / 1e9)
    parts = w.compute + p.variance + p.compress + p.aggregate + p.compressed_comm
    assert p.compressed_step == pytest.approx(parts)
    assert p.speedup == pytest.approx(p.dense_step / p.compressed_step)


@given(
    st.integers(10**3, 10**9),  # N
    st.integers(2, 256),  # P
    st.floats(2.0, 1e4),  # ratio (near 1 the saving is lost in rounding at huge step times)
    st.floats(0.0, 1e-4),  # latency
    st.floats(1e-4, 1.0),  # compute
)
def test_step_times_are_equal_at_the_break_even_bandwidth(n, p, ratio, latency, compute):
    """Below W* compression is faster, above it slower, at it equal."""
    base = Workload(n_params=n, workers=p, bandwidth=1e9, latency=latency, ratio=ratio, compute=compute)
    w_star = predict(base).break_even_bandwidth
    assume(0.0 < w_star < math.inf)
    at = predict(Workload(**{**base.__dict__, "bandwidth": w_star}))
    assert at.dense_step == pytest.approx(at.compressed_step, rel=1e-9)
    below = predict(Workload(**{**base.__dict__, "bandwidth": w_star / 2}))
    assert below.compressed_step < below.dense_step


def test_no_gain_when_allgather_moves_more_than_allreduce():
    """ratio < P/2: each worker receives more bytes than in the allreduce."""
    w = Workload(n_params=10**6, workers=16, bandwidth=1e9, latency=0.0, ratio=4.0, compute=0.01)
    assert predict(w).break_even_bandwidth == 0.0


@pytest.mark.parametrize(
    ("field", "value"), [("workers", 0), ("ratio", 0.0), ("bandwidth", -1.0), ("latency", -1.0)]
)
def test_bad_workload_is_rejected(field, value):
    kw = {"n_params": 100, "workers": 2, "bandwidth": 1e9, "latency": 0.0, "ratio": 10.0, "compute": 0.01}
    with pytest.raises(HyperparameterError) as info:
        Workload(**{**kw, field: value})
    assert info.value.name == field


def test_units():
    assert parse_bandwidth("10Gbit") == 1.25e9
    assert parse_bandwidth("10Gbit/s") == 1.25e9
    assert parse_bandwidth("100MB") == 1e8
    assert parse_bandwidth("5e6") == 5e6


def test_cli_prints_json_and_rejects_bad_units(capsys):
    main(
        [
            "--params",
            "1e6",
            "--workers",
            "4",
            "--bandwidth",
            "1Gbit",
            "--ratio",
            "50",
            "--compute",
            "10ms",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert out["workload"]["workers"] == 4 and out["prediction"]["speedup"] > 0
    with pytest.raises(SystemExit):
        main(
            [
                "--params",
                "1e6",
                "--workers",
                "4",
                "--bandwidth",
                "1 furlong",
                "--ratio",
                "5",
                "--compute",
                "1",
            ]
        )


def test_per_segment_term_adds_fixed_costs():
    """S segments at c_seg each add S c_seg to compress and P S a_seg to aggregate; 0 keeps the
    long-segment model."""
    base = dict(n_params=13_000, workers=4, bandwidth=1e9, latency=0.0, ratio=40.0, compute=0.003)
    plain = predict(Workload(**base))
    fixed = predict(Workload(**base, segments=6, segment_compress=2e-4, segment_aggregate=1e-5))
    assert fixed.compress == pytest.approx(plain.compress + 6 * 2e-4)
    assert fixed.aggregate == pytest.approx(plain.aggregate + 4 * 6 * 1e-5)
    assert fixed.compressed_step == pytest.approx(plain.compressed_step + 6 * 2e-4 + 24e-5)
    assert predict(Workload(**base, segments=6)) == plain
    with pytest.raises(HyperparameterError, match="segments"):
        Workload(**base, segments=0)
    with pytest.raises(HyperparameterError, match="segment_compress"):
        Workload(**base, segment_compress=-1.0)
