"""The demo's generator (mpi_demo.rng) against SplitMix64 written with Python ints, mod 2^64."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpi_demo import rng

M = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def py_mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)


def py_key(seed: int, *tags: int) -> int:
    k = py_mix((seed + GOLDEN) & M)
    for t in tags:
        k = py_mix(((k ^ t) + GOLDEN) & M)
    return k


def py_bits(k: int, i: int) -> int:
    return py_mix((k + (i + 1) * GOLDEN) & M)


def py_normal(k: int, i: int) -> float:
    acc = 0.0
    for j in range(12):
        acc += float(py_bits(k, 12 * i + j) >> 11) * 2.0**-53
    return acc - 6.0


seeds = st.integers(0, 2**64 - 1)
tags = st.lists(st.integers(0, 2**32), max_size=3)


def test_splitmix64_first_output_of_seed_0():
    """bits(mix(0 + GOLDEN) ... ) aside: mix(GOLDEN) is SplitMix64's published first output of seed 0."""
    # SplitMix64 seeded with 0 first returns mix(0 + GOLDEN) = 0xE220A8397B1DCDAF.
    assert int(rng.mix(np.array([GOLDEN], np.uint64))[0]) == 0xE220A8397B1DCDAF
    assert py_mix(GOLDEN) == 0xE220A8397B1DCDAF


@given(seed=seeds, tags=tags)
def test_key_equals_python_int_arithmetic(seed, tags):
    assert rng.key(seed, *tags) == py_key(seed, *tags)


@given(seed=seeds, tags=tags, start=st.integers(0, 2**40), n=st.integers(1, 20))
def test_bits_and_uniform_equal_python_int_arithmetic(seed, tags, start, n):
    k = py_key(seed, *tags)
    idx = np.arange(start, start + n, dtype=np.uint64)
    want = [py_bits(k, i) for i in range(start, start + n)]
    assert [int(b) for b in rng.bits(k, idx)] == want
    assert rng.uniform(k, idx).tolist() == [float(b >> 11) * 2.0**-53 for b in want]


@given(seed=seeds, start=st.integers(0, 2**30), n=st.integers(1, 8))
def test_normal_is_the_ordered_irwin_hall_sum(seed, start, n):
    k = py_key(seed, 0, 0)
    got = rng.normal(k, np.arange(start, start + n, dtype=np.uint64))
    assert got.tolist() == [py_normal(k, i) for i in range(start, start + n)]


def test_pinned_values():
    """A few values of the default seed's streams, computed here with Python ints."""
    k = py_key(0, 0, 0)
    assert rng.key(0, 0, 0) == k
    assert int(rng.bits(k, 0)[0]) == py_bits(k, 0)
    assert rng.normal(k, 5)[0] == py_normal(k, 5)
    assert int(rng.below(k, 3, 32)[0]) == ((py_bits(k, 3) >> 32) * 32) >> 32


@given(seed=seeds, m=st.integers(1, 2**32), n=st.integers(1, 200))
def test_below_lies_in_range_and_equals_python(seed, m, n):
    k = py_key(seed)
    got = rng.below(k, np.arange(n, dtype=np.uint64), m)
    assert got.dtype == np.int64 and got.min() >= 0 and got.max() < m
    assert got.tolist() == [((py_bits(k, i) >> 32) * m) >> 32 for i in range(n)]


@given(seed=seeds, n=st.integers(1, 500))
def test_uniform_lies_in_the_unit_interval(seed, n):
    u = rng.uniform(rng.key(seed, 7), np.arange(n, dtype=np.uint64))
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0


@given(seed=seeds, n=st.integers(0, 300))
def test_permutation_is_a_permutation_sorted_by_bits(seed, n):
    k = rng.key(seed, 2, 0)
    p = rng.permutation(k, n)
    assert sorted(p.tolist()) == list(range(n))
    b = [py_bits(k, i) for i in range(n)]
    assert [b[i] for i in p.tolist()] == sorted(b)


def test_no_overflow_warnings():
    """uint64 wrap-around is the definition, not an accident: no RuntimeWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rng.normal(rng.key(2**64 - 1, 2**63), np.arange(1000, dtype=np.uint64))
        rng.permutation(rng.key(123), 1000)


def test_bad_arguments():
    with pytest.raises(ValueError, match="m 0"):
        rng.below(1, 0, 0)
    with pytest.raises(ValueError, match="index -1"):
        rng.bits(1, -1)
    with pytest.raises(ValueError, match="non-negative"):
        rng.bits(1, np.array([-2]))


@pytest.mark.parametrize("n_in,n_out", [(1, 1), (3, 5), (256, 256), (257, 300)])
def test_he_normal32_in_chunks_equals_one_draw_over_every_index(monkeypatch, n_in, n_out):
    """The initial weights drawn DRAW_CHUNK at a time are the float32 of one draw over all
    indices (docs/demo.md "Initial parameters"), bit for bit, with chunk ends inside."""
    monkeypatch.setattr(rng, "DRAW_CHUNK", 1000)
    k = rng.key(3, 1, 2)
    whole = (rng.normal(k, np.arange(n_in * n_out, dtype=np.uint64)) * np.sqrt(2.0 / n_in)).astype(np.float32)
    assert rng.he_normal32(k, n_in, n_out).tobytes() == whole.tobytes()
