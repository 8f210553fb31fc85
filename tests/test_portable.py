"""The portable primitives (docs/demo.md, "Portable primitives"; docs/algorithm.md section 2).

* every Numba kernel of vgc_ref.backends.numba_portable gives the bits of its NumPy twin
  in vgc_ref.portable, on Hypothesis inputs (empty and one-long axes, edge values, sums
  long enough that the order shows), whatever the number of threads;
* no kernel contains a fused multiply-add;
* exp32 and log32 are within one float32 ulp of float32(float64 libm exp / log) for every
  float32 input of their domain (all 2^32 bit patterns scanned), and the count of inputs
  where they differ is small;
* the hand-picked layers of the conformance kit each show the rule they are named for.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numba import njit, prange

from vgc_ref import InputError, dense_grad_var
from vgc_ref import portable as ref
from vgc_ref.backends import numba_portable as fast
from vgc_ref.conformance.test_variance import EDGE_LAYERS

F32 = np.float32
PRODUCTS = ("matmul", "matmul_tn", "matmul_nt")
SUMS = ("column_sums", "row_sums")
ELEMENTWISE = ("exp32", "log32")

#: Values where float32 arithmetic shows: signed zeros, subnormals, the smallest normal,
#: products that round, large powers of two (|v| <= 2^28: no product or sum overflows).
EDGE = (0.0, -0.0, 1.0, -1.0, 2.0**-149, -(2.0**-148), 2.0**-126, 1.0 + 2.0**-12, -(1.0 + 2.0**-11))
EDGE += (1.0 + 2.0**-23, 0.1, 3.0, 2.0**24, -(2.0**28), 2.0**-70)


@pytest.fixture(autouse=True)
def compile_here(monkeypatch):
    """Compiling reloads Numba's configuration from the environment, and it refuses a
    NUMBA_NUM_THREADS other than the running pool's (mpi_demo.sweep sets the variable
    when tests/test_sweep.py imports it, possibly after the pool started): keep the
    variable at the pool's value while a test here compiles (the FMA checks, the scan,
    the serial kernels on first use)."""
    from numba import config

    monkeypatch.setenv("NUMBA_NUM_THREADS", str(config.NUMBA_NUM_THREADS))


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


def assert_same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32 and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    diff = np.flatnonzero(bits(got).reshape(-1) != bits(want).reshape(-1))
    assert diff.size == 0, (
        f"{diff.size} elements differ; first at flat index {diff[0]}: "
        f"{got.reshape(-1)[diff[0]]!r} vs reference {want.reshape(-1)[diff[0]]!r}"
    )


@st.composite
def matrices(draw, rows: int, cols: int, label: str):
    """float32[rows, cols]: Hypothesis elements when small, else seeded values of many
    magnitudes with a drawn share of edge values."""
    if rows * cols <= 64 and draw(st.booleans(), label=f"{label} from Hypothesis elements"):
        elements = st.one_of(st.floats(-(2.0**28), 2.0**28, width=32), st.sampled_from(EDGE))
        return draw(hnp.arrays(F32, (rows, cols), elements=elements), label=label)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label=f"{label} seed"))
    a = np.clip(
        rng.standard_normal((rows, cols)) * 2.0 ** rng.integers(-40, 10, (rows, cols)), -(2.0**28), 2.0**28
    )
    a = a.astype(F32)
    edge = rng.random((rows, cols)) < draw(st.sampled_from([0.0, 0.2, 1.0]), label=f"{label} edge share")
    a[edge] = rng.choice(np.array(EDGE, F32), size=int(edge.sum()))
    return a


def lengths(long: bool = True):
    """0, 1, small, or (for the summed index) long enough that the order of additions shows."""
    small = st.integers(0, 9)
    return st.one_of(small, st.integers(100, 700)) if long else small


@st.composite
def product_operands(draw, name: str):
    m, n = draw(lengths(False), label="m"), draw(lengths(False), label="n")
    k = draw(lengths(), label="K")
    shape_a = {"matmul": (m, k), "matmul_tn": (k, m), "matmul_nt": (m, k)}[name]
    shape_b = {"matmul": (k, n), "matmul_tn": (k, n), "matmul_nt": (n, k)}[name]
    return draw(matrices(*shape_a, "a")), draw(matrices(*shape_b, "b"))


@pytest.mark.parametrize("name", PRODUCTS)
def test_product_kernel_gives_the_reference_bits(name):
    """matmul, matmul_tn, matmul_nt: the Numba kernel equals the NumPy reference bit for bit
    (K up to 700, every shape with 0 and 1), and does not modify its inputs."""

    @given(operands=product_operands(name))
    def check(operands):
        a, b = operands
        a0, b0 = a.copy(), b.copy()
        assert_same_bits(getattr(fast, name)(a, b), getattr(ref, name)(a, b))
        assert_same_bits(a, a0)
        assert_same_bits(b, b0)

    check()


@pytest.mark.parametrize("name", SUMS)
def test_sum_kernel_gives_the_reference_bits(name):
    """column_sums, row_sums: bit-identical to the reference, including empty axes and
    sums over 100-700 terms."""

    @given(a=st.tuples(lengths(), lengths()).flatmap(lambda s: matrices(*s, "a")))
    def check(a):
        assert_same_bits(getattr(fast, name)(a), getattr(ref, name)(a))

    check()


def test_products_read_transposed_and_strided_operands_in_place():
    """Non-contiguous operands (views with strides) give the bits of contiguous copies."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((40, 30)).astype(F32)
    b = rng.standard_normal((30, 50)).astype(F32)
    for name, x, y in (
        ("matmul", a[::2], b[:, ::3]),  # [20, 30] [30, 17]
        ("matmul_tn", a[:, ::2], b.T[:40]),  # [40, 15] [40, 30]
        ("matmul_nt", a[:, ::2], b.T[:, ::2]),  # [40, 15] [50, 15]
    ):
        want = getattr(ref, name)(np.ascontiguousarray(x), np.ascontiguousarray(y))
        assert_same_bits(getattr(fast, name)(x, y), want)
        assert_same_bits(getattr(ref, name)(x, y), want)


@given(x=hnp.arrays(F32, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
def test_exp32_log32_kernels_give_the_reference_bits_on_any_shape(x):
    """exp32 and log32 of any float32 array (every value Hypothesis draws, NaN, infinities
    and negatives included) equal the reference's bits, in the input's shape."""
    for name in ELEMENTWISE:
        assert_same_bits(getattr(fast, name)(x), getattr(ref, name)(x))


def _binade_edges() -> np.ndarray:
    """For every sign and exponent field, the first pattern of the binade and its two
    neighbours, plus the thresholds of exp32 and log32."""
    e = np.arange(256, dtype=np.int64) << 23
    around = np.concatenate([e - 1, e, e + 1]) & 0x7FFFFFFF
    patterns = np.concatenate([around, around | 0x80000000]).astype(np.uint32)
    special = np.array([89.0, -104.0, 88.72283, 88.72284, -103.27893, -103.97208, 1.0, 0.5, 2.0], F32)
    near = np.concatenate([special, np.nextafter(special, F32(np.inf)), np.nextafter(special, F32(-np.inf))])
    return np.concatenate([patterns.view(F32), near, np.array([np.sqrt(0.5), np.sqrt(2.0)], F32)])


def test_exp32_log32_kernels_give_the_reference_bits_on_a_large_sample():
    """2^21 random bit patterns (every class of float32) and every binade boundary: the
    Numba exp32 and log32 equal the NumPy reference bit for bit."""
    rng = np.random.default_rng(2026)
    sample = np.concatenate(
        [rng.integers(0, 2**32, 1 << 21, dtype=np.uint64).astype(np.uint32).view(F32), _binade_edges()]
    )
    for name in ELEMENTWISE:
        assert_same_bits(getattr(fast, name)(sample), getattr(ref, name)(sample))


def test_exp32_log32_special_values():
    """exp32: +inf above 89, +0.0 below -104, 1 at +-0, a NaN returned as given; log32: -inf
    at +-0, +inf at +inf, the quiet NaN 0x7FC00000 below zero (-inf too), +0.0 at 1."""
    nan = np.uint32(0x7FC01234).view(F32)  # a NaN with a payload
    x = np.array([89.5, np.inf, -104.5, -np.inf, 0.0, -0.0, nan, 1.0, -1.0], F32)
    for mod in (ref, fast):
        assert [int(b) for b in bits(mod.exp32(x))] == [
            0x7F800000,
            0x7F800000,
            0,
            0,
            0x3F800000,
            0x3F800000,
            0x7FC01234,
            0x402DF854,
            0x3EBC5AB2,
        ]
        assert [int(b) for b in bits(mod.log32(x))[1:]] == [
            0x7F800000,
            0x7FC00000,
            0x7FC00000,
            0xFF800000,
            0xFF800000,
            0x7FC01234,
            0,
            0x7FC00000,
        ]


# --------------------------------------------------------------------------------------
# Validation: the same errors before any kernel runs
# --------------------------------------------------------------------------------------

GOOD = np.ones((3, 4), F32)
BAD_OPERANDS = {
    "float64": (GOOD.astype(np.float64), GOOD.T.copy()),
    "list": (GOOD.tolist(), GOOD.T.copy()),
    "one_dimensional": (GOOD[0], GOOD.T.copy()),
    "three_dimensional": (GOOD[None], GOOD.T.copy()),
    "summed_lengths_differ": (GOOD, np.ones((5, 2), F32)),
}


ONE_OPERAND_CASES = ("float64", "list", "one_dimensional", "three_dimensional")
INVALID = [(name, case) for name in PRODUCTS for case in BAD_OPERANDS]
INVALID += [(name, case) for name in SUMS for case in ONE_OPERAND_CASES]
INVALID += [(name, case) for name in ELEMENTWISE for case in ("float64", "list")]


@pytest.mark.parametrize(("name", "case"), INVALID)
def test_invalid_operands_raise_the_reference_input_error(name, case):
    """Wrong type, dtype, rank or summed length (exp32 and log32 take any rank): InputError,
    the same message from the reference and the kernel's wrapper, before any kernel runs."""
    a, b = BAD_OPERANDS[case]
    if name == "matmul_tn" and case != "summed_lengths_differ":
        b = b.T.copy()  # a: [K, m], b: [K, n]
    args = (a, b) if name in PRODUCTS else (a,)
    with pytest.raises(InputError) as want:
        getattr(ref, name)(*args)
    with pytest.raises(InputError) as got:
        getattr(fast, name)(*args)
    assert str(got.value) == str(want.value)


# --------------------------------------------------------------------------------------
# Thread count and FMA
# --------------------------------------------------------------------------------------

_DIGEST_SCRIPT = textwrap.dedent(
    """
    import hashlib, numpy as np
    from vgc_ref.backends import numba_portable as fast
    rng = np.random.default_rng(11)
    a = rng.standard_normal((67, 300)).astype(np.float32)
    b = rng.standard_normal((300, 90)).astype(np.float32)  # sizes above SERIAL_BELOW: prange runs
    wide = rng.standard_normal((40, 40000)).astype(np.float32)  # column sums in several chunks
    x = (rng.standard_normal(1 << 21) * 30).astype(np.float32)
    d = (rng.standard_normal((300, 45)) / 300).astype(np.float32)
    out = [fast.matmul(a, b), fast.matmul_tn(a.T.copy(), b), fast.matmul_nt(a, b.T.copy()),
           fast.column_sums(wide), fast.row_sums(wide.T.copy()), fast.exp32(x), fast.log32(np.abs(x)),
           *fast.dense_grad_var(a.T.copy(), d)]
    print(hashlib.sha256(b"".join(o.tobytes() for o in out)).hexdigest())
    """
)


def _reference_digest() -> str:
    rng = np.random.default_rng(11)
    a = rng.standard_normal((67, 300)).astype(F32)
    b = rng.standard_normal((300, 90)).astype(F32)
    wide = rng.standard_normal((40, 40000)).astype(F32)
    x = (rng.standard_normal(1 << 21) * 30).astype(F32)
    d = (rng.standard_normal((300, 45)) / 300).astype(F32)
    out = [
        ref.matmul(a, b),
        ref.matmul_tn(a.T.copy(), b),
        ref.matmul_nt(a, b.T.copy()),
        ref.column_sums(wide),
        ref.row_sums(wide.T.copy()),
        ref.exp32(x),
        ref.log32(np.abs(x)),
        *dense_grad_var(a.T.copy(), d),
    ]
    return hashlib.sha256(b"".join(o.tobytes() for o in out)).hexdigest()


def test_kernels_give_the_same_bits_with_one_and_two_threads():
    """NUMBA_NUM_THREADS=1 and 2 (fresh processes): the same bytes, equal to the reference's."""
    digests = {}
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        proc = subprocess.run(
            [sys.executable, "-c", _DIGEST_SCRIPT], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        digests[threads] = proc.stdout.strip()
    assert digests["1"] == digests["2"] == _reference_digest()


FMA = re.compile(r"\bvf(n?)m(add|sub)\w*")
KERNELS = ("_matmul_tn", "_grad_var", "_column_sums", "_exp32_flat", "_log32_flat")


def _asm(py_func, args, **options) -> str:
    jitted = njit(**options)(py_func)
    jitted(*args)
    return "\n".join(jitted.inspect_asm().values())


def _kernel_args(name: str):
    m = np.ones((4, 5), F32)
    out = np.zeros((4, 4), F32)
    v = np.ones(8, F32)
    return {
        "_matmul_tn": (np.ones((5, 4), F32), np.ones((5, 4), F32), out),
        "_grad_var": (np.ones((5, 4), F32), np.ones((5, 4), F32), np.ones((5, 4), F32), out, out.copy()),
        "_column_sums": (m, np.zeros(5, F32)),
        "_exp32_flat": (v, v.copy()),
        "_log32_flat": (v, v.copy()),
    }[name]


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("name", KERNELS)
def test_kernels_contain_no_fused_multiply_add(name, parallel):
    """The generated machine code of every kernel, parallel and serial (small inputs), has
    no FMA instruction (vfmadd, vfmsub, vfnmadd, ...). Cached dispatchers cannot be
    inspected, so each kernel's Python function is compiled again with the module's options."""
    options = {k: v for k, v in fast._JIT.items() if k != "cache"}
    asm = _asm(getattr(fast, name).py_func, _kernel_args(name), parallel=parallel, **options)
    found = sorted(set(FMA.findall(asm)))
    assert not FMA.search(asm), f"{name}: FMA instructions {found}"


def test_the_fma_check_finds_fma_when_contraction_is_allowed():
    """The check has teeth: with fastmath (contraction allowed) the product kernel does use
    FMA on a CPU that has it (skipped on one that does not)."""
    asm = _asm(fast._matmul_tn.py_func, _kernel_args("_matmul_tn"), fastmath=True)
    if not FMA.search(asm):
        pytest.skip("this CPU (or LLVM target) has no FMA instructions")
    assert FMA.search(asm)


# --------------------------------------------------------------------------------------
# exp32 and log32 over every float32 input
# --------------------------------------------------------------------------------------

SCAN_CHUNK = 1 << 20


@njit(inline="always")
def _ordered(x):
    """float32 -> integer whose order is the float order (+0 and -0 both 0): the distance
    of two such integers is the distance in float32 ulps."""
    b = np.int64(np.float32(x).view(np.int32))
    return b if b >= 0 else -(b & 0x7FFFFFFF)


@njit(parallel=True, cache=True, error_model="numpy")
def _scan(use_log, lo, hi, nudge, differ, worst, example):
    """For bit patterns lo..hi-1 (chunk c: SCAN_CHUNK of them): how many results differ from
    float32(libm float64 exp/log), the largest distance in ulps, and the last such input.
    The result for input ``nudge`` is moved up by one ulp first (-1: none), for the test
    that shows the scan can count."""
    for c in prange(differ.shape[0]):
        start = lo + c * SCAN_CHUNK
        stop = min(start + SCAN_CHUNK, hi)
        got = np.empty(stop - start, np.float32)
        if use_log:
            for j in range(stop - start):
                got[j] = fast._log32(np.uint32(start + j).view(np.float32))
        else:
            for j in range(stop - start):
                got[j] = fast._exp32(np.uint32(start + j).view(np.float32))
        n = 0
        w = 0
        for j in range(stop - start):
            x = np.float64(np.uint32(start + j).view(np.float32))
            want = np.float32(math.log(x)) if use_log else np.float32(math.exp(x))
            d = abs(_ordered(got[j]) + (start + j == nudge) - _ordered(want))
            if d != 0:
                n += 1
                example[c] = start + j
            w = max(w, d)
        differ[c] = n
        worst[c] = w


def _scan_range(use_log: bool, lo: int, hi: int, nudge: int = -1) -> tuple[int, int, list[int]]:
    chunks = (hi - lo + SCAN_CHUNK - 1) // SCAN_CHUNK
    differ = np.zeros(chunks, np.int64)
    worst = np.zeros(chunks, np.int64)
    example = np.full(chunks, -1, np.int64)
    _scan(use_log, lo, hi, nudge, differ, worst, example)
    return int(differ.sum()), int(worst.max(initial=0)), [int(e) for e in example if e >= 0]


#: Largest count of inputs where exp32 / log32 may differ from float32(libm). Measured
#: with glibc's exp and log: 0 and 2 (docs/performance.md, "exp32 and log32 over every
#: input"); another libm may round a few more float64 results onto a float32 midpoint.
MAX_DIFFER = 16


@pytest.mark.slow
def test_exp32_is_within_one_ulp_of_libm_for_every_finite_float32():
    """All 4,278,190,080 finite float32 x: |exp32(x) - float32(exp(float64(x)))| <= 1 ulp
    (+inf counts as one ulp above FLT_MAX), and they differ on at most MAX_DIFFER inputs."""
    n_pos, w_pos, ex_pos = _scan_range(False, 0, 0x7F800000)
    n_neg, w_neg, ex_neg = _scan_range(False, 0x80000000, 0xFF800000)
    examples = [f"{np.uint32(e).view(F32)!r}" for e in (ex_pos + ex_neg)[:8]]
    worst = max(w_pos, w_neg)
    print(f"exp32: {n_pos + n_neg} inputs differ from float32(libm exp), at most {worst} ulp: {examples}")
    assert max(w_pos, w_neg) <= 1
    assert n_pos + n_neg <= MAX_DIFFER


@pytest.mark.slow
def test_log32_is_within_one_ulp_of_libm_for_every_positive_float32():
    """All 2,139,095,039 positive finite float32 x (subnormals included): |log32(x) -
    float32(log(float64(x)))| <= 1 ulp, and they differ on at most MAX_DIFFER inputs."""
    n, w, ex = _scan_range(True, 1, 0x7F800000)
    examples = [f"{np.uint32(e).view(F32)!r}" for e in ex[:8]]
    print(f"log32: {n} inputs differ from float32(libm log), at most {w} ulp: {examples}")
    assert w <= 1
    assert n <= MAX_DIFFER


def test_the_scan_counts_a_result_one_ulp_off():
    """The scan has teeth: around x = 1.0 exp32 and log32 agree with libm, and a result
    nudged by one ulp there is counted, with its distance and its input."""
    lo = int(np.float32(1.0).view(np.uint32)) - 500
    assert _scan_range(True, lo, lo + 1000) == (0, 0, [])
    assert _scan_range(False, lo, lo + 1000) == (0, 0, [])
    assert _scan_range(True, lo, lo + 1000, nudge=lo + 7) == (1, 1, [lo + 7])


# --------------------------------------------------------------------------------------
# The conformance kit's hand-picked layers show their rules
# --------------------------------------------------------------------------------------


def _fma_order(x, d):
    out = np.zeros((x.shape[1], d.shape[1]), F32)
    for k in range(x.shape[0]):
        out = (out.astype(np.float64) + x[k, :, None].astype(np.float64) * d[k].astype(np.float64)).astype(
            F32
        )
    return out


def _pairwise(terms):  # float32[B, ...] -> sum over B as a balanced tree
    if terms.shape[0] == 1:
        return terms[0]
    half = terms.shape[0] // 2
    return _pairwise(terms[:half]) + _pairwise(terms[half:])


def _blocked(x, d, block=256):
    out = np.zeros((x.shape[1], d.shape[1]), F32)
    for lo in range(0, x.shape[0], block):
        out = out + ref.matmul_tn(x[lo : lo + block], d[lo : lo + block])
    return out


def _from_first_product(x, d):
    out = x[0, :, None] * d[0]
    for k in range(1, x.shape[0]):
        out = out + x[k, :, None] * d[k]
    return out


def _flush_to_zero(x, d):  # every product and sum below 2^-126 flushed to zero
    def flush(a):
        return np.where(np.abs(a) < 2.0**-126, F32(0), a)

    out = np.zeros((x.shape[1], d.shape[1]), F32)
    for k in range(x.shape[0]):
        out = flush(out + flush(flush(x[k, :, None]) * flush(d[k])))
    return out


ALTERNATIVES = {
    # case -> a wrong way to compute g_W (or s_W) that the case tells apart
    "no_fma": lambda x, d: (_fma_order(x, d), 0),
    "sequential_not_pairwise": lambda x, d: (_pairwise(x[:, :, None] * d[:, None, :]), 0),
    "sequential_not_reversed": lambda x, d: (ref.matmul_tn(x[::-1].copy(), d[::-1].copy()), 0),
    "long_batch": lambda x, d: (_blocked(x, d), 0),
    "blas_order": lambda x, d: (_blocked(x, d), 0),
    "squares_rounded_first": lambda x, d: ((x.T @ d) * (x.T @ d), 1),
    "signed_zeros": lambda x, d: (_from_first_product(x, d), 0),
    "subnormals": lambda x, d: (_flush_to_zero(x, d), 0),
}


@pytest.mark.parametrize("case", list(EDGE_LAYERS))
def test_each_conformance_edge_layer_shows_its_rule(case):
    """On each hand-picked layer of the kit, the wrong computation its name rules out (FMA,
    pairwise, reversed, blocked, (x*D)^2, accumulator from the first product, flush to
    zero) gives other bits than dense_grad_var, so the case can catch it."""
    x, d = EDGE_LAYERS[case]()
    wrong, which = ALTERNATIVES[case](x, d)
    right = dense_grad_var(x, d)[which]
    assert wrong.shape == right.shape
    assert not np.array_equal(bits(wrong.astype(F32)), bits(right))


# --------------------------------------------------------------------------------------
# Golden vectors of dense_grad_var
# --------------------------------------------------------------------------------------


def test_dense_golden_vectors_pass_the_kernel_and_fail_fma(tmp_path, capsys):
    """The ``dense_*`` golden vectors: numba-cpu's dense_grad_var reproduces every expected
    file; an implementation that fuses multiply and add fails, and check names the case."""
    import json

    from vgc_ref import vectors

    cases = vectors._export_dense(tmp_path)
    (tmp_path / "index.json").write_text(
        json.dumps({"format": vectors.FORMAT, "version": vectors.VERSION, "cases": cases})
    )
    names = [c["name"] for c in cases]
    assert {"dense_no_fma", "dense_blas_order", "dense_random"} <= set(names)
    shape = json.loads((tmp_path / "dense_random" / "case.json").read_text())
    assert (tmp_path / "dense_random" / "expected" / "g_W.f32").stat().st_size == 4 * shape["in"] * shape[
        "out"
    ]

    vectors.run_impl(tmp_path, "backend:numba-cpu")
    assert vectors.check(tmp_path) == 0

    vectors.run_impl(tmp_path, str(Path(__file__).parent / "wrong_impls" / "dense_grad_var_fma.py"))
    capsys.readouterr()
    assert vectors.check(tmp_path) == 1
    report = capsys.readouterr().out
    assert "FAIL  dense_no_fma: g_W.f32: element 0" in report
    assert "ok    dense_sequential_not_pairwise" in report
