"""The learning-rate schedule (mpi_demo/schedule.py, docs/demo.md step 11): its values, its
decays at the documented steps, and a cosine that is portable yet close to libm's."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpi_demo import schedule
from mpi_demo.config import ConfigError, TrainConfig, validate


def test_constant_is_the_float32_of_lr():
    for lr in (0.05, 0.1, 1e-3, 0.3):
        assert all(schedule.lr_at(lr, "constant", t, 100) == np.float32(lr) for t in range(100))


def test_step_decays_tenfold_at_one_half_and_three_quarters():
    total = 150
    factors = [schedule.factor("step", t, total) for t in range(total)]
    assert factors[:75] == [1.0] * 75  # 2t < 150
    assert factors[75:113] == [0.1] * 38  # 4t < 450: t <= 112
    assert factors[113:] == [0.01] * 37


@given(st.floats(0.0, math.pi))
def test_series_cosine_is_within_a_few_ulps_of_libm(x):
    # The reference point is libm's cos, which differs between machines by an ulp at most;
    # the series is a fixed sequence of float64 operations, the same everywhere.
    assert abs(schedule.cos64(x) - math.cos(x)) <= 4 * math.ulp(1.0)


@pytest.mark.parametrize("total", [1, 2, 7, 150, 4000])
def test_cosine_starts_at_lr_and_never_increases(total):
    lrs = [schedule.lr_at(0.05, "cosine", t, total) for t in range(total)]
    assert lrs[0] == np.float32(0.05)
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    assert all(b >= 0 for b in lrs)
    want = [np.float32(0.05 * 0.5 * (1 + math.cos(math.pi * t / total))) for t in range(total)]
    # within one float32 ulp of the libm formula (the product rounds once to float32)
    assert all(abs(float(a) - float(b)) <= float(np.spacing(np.float32(0.05))) for a, b in zip(lrs, want))


def test_unknown_schedule_is_refused():
    with pytest.raises(ConfigError, match="--lr-schedule"):
        validate(TrainConfig(lr_schedule="linear"))
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        schedule.factor("linear", 0, 10)


def test_schedule_enters_the_trace_header_only_when_not_constant():
    assert "lr_schedule" not in TrainConfig().arithmetic()
    assert TrainConfig(lr_schedule="cosine").arithmetic()["lr_schedule"] == "cosine"
