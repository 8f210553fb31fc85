"""numba-cpu's register-tiled ordered products against the NumPy reference, bit for bit.

The kernels (vgc_ref/backends/numba_cpu.py, "Dense layer: register-tiled ordered
products") keep a TILE_I x TILE_J tile of sums in vector registers through the whole
batch loop; numba-cpu's dense_grad_var and conv_grad_var (vgc_ref/backends/numba_conv.py)
use them. Three properties pin them:

1. its results are the reference's bits (vgc_ref.variance.dense_grad_var, the order of
   docs/algorithm.md section 2) on every shape, ragged tile edges included, and on values
   where float32 arithmetic shows (signed zeros, subnormals, rounding products);
2. with infinities and NaN in the input it gives the reference's results, NaN where the
   reference has NaN (IEEE 754 leaves a NaN's sign and payload to the machine);
3. its hot loop is vector code without FMA: packed multiplies and adds, no scalar ones,
   no vfmadd (a scalar loop would be 5x slower; an FMA would change the bits).
"""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numba import njit

from vgc_ref import InputError
from vgc_ref import portable as ref_portable
from vgc_ref.backends import get_backend, numba_conv
from vgc_ref.backends import numba_cpu as fast
from vgc_ref.variance import CONV_VARIANCE_FORMS, conv_grad_var
from vgc_ref.variance import dense_grad_var as reference

F32 = np.float32
NAMES = ("g_W", "s_W", "g_b", "s_b")

#: Values where float32 arithmetic shows: signed zeros, subnormals, the smallest normal,
#: products that round, large powers of two (|v| <= 2^28: no product or sum overflows).
EDGE = (0.0, -0.0, 1.0, -1.0, 2.0**-149, -(2.0**-148), 2.0**-126, 3.0 * 2.0**-140, 1.0 + 2.0**-12)
EDGE += (-(1.0 + 2.0**-11), 1.0 + 2.0**-23, 0.1, 3.0, 2.0**24, -(2.0**28), 2.0**-70)


@pytest.fixture(autouse=True)
def compile_here(monkeypatch):
    """Keep NUMBA_NUM_THREADS at the running pool's value while a test here compiles
    (as tests/test_portable.py does: compiling reloads Numba's configuration)."""
    from numba import config

    monkeypatch.setenv("NUMBA_NUM_THREADS", str(config.NUMBA_NUM_THREADS))


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


def assert_same_bits(got: np.ndarray, want: np.ndarray, name: str) -> None:
    assert got.dtype == F32 and got.shape == want.shape, (name, got.dtype, got.shape, want.shape)
    diff = np.argwhere(bits(got) != bits(want))
    assert diff.size == 0, (
        f"{name}: {len(diff)} elements differ; first at {tuple(diff[0])}: "
        f"{got[tuple(diff[0])]!r} vs reference {want[tuple(diff[0])]!r}"
    )


def lengths():
    """1 .. 300, with the tile edges (multiples of 8 and 16, one either side) drawn often."""
    tiles = (fast.TILE_I, fast.TILE_J)
    edges = sorted({t * m + e for t in tiles for m in (1, 2, 16) for e in (-1, 0, 1)})
    return st.one_of(st.integers(1, 300), st.sampled_from(edges))


@st.composite
def matrices(draw, rows: int, cols: int, label: str):
    """float32[rows, cols]: Hypothesis elements when small, else seeded values of many
    magnitudes (2^-40 .. 2^10) with a drawn share of edge values."""
    if rows * cols <= 64 and draw(st.booleans(), label=f"{label} from Hypothesis elements"):
        elements = st.one_of(st.floats(-(2.0**28), 2.0**28, width=32), st.sampled_from(EDGE))
        return draw(hnp.arrays(F32, (rows, cols), elements=elements), label=label)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label=f"{label} seed"))
    a = rng.standard_normal((rows, cols)) * 2.0 ** rng.integers(-40, 10, (rows, cols))
    a = np.clip(a, -(2.0**28), 2.0**28).astype(F32)
    edge = rng.random((rows, cols)) < draw(st.sampled_from([0.0, 0.2, 1.0]), label=f"{label} edge share")
    a[edge] = rng.choice(np.array(EDGE, F32), size=int(edge.sum()))
    return a


@st.composite
def layers(draw):
    batch, n_in, n_out = (draw(lengths(), label=n) for n in ("B", "in", "out"))
    return draw(matrices(batch, n_in, "x")), draw(matrices(batch, n_out, "delta"))


@given(layer=layers())
def test_tiled_dense_grad_var_gives_the_reference_bits_on_every_shape(layer):
    """Property 1: B, in, out from 1 to 300 (tile multiples and one either side drawn
    often, so every kind of ragged edge shows), values of 50 binades, subnormals and
    signed zeros: all four results are the reference's bits, and the inputs are unchanged."""
    x, delta = layer
    x0, d0 = x.copy(), delta.copy()
    for name, got, want in zip(NAMES, fast.dense_grad_var(x, delta), reference(x, delta)):
        assert_same_bits(got, want, name)
    assert_same_bits(x, x0, "x")
    assert_same_bits(delta, d0, "delta")


@given(
    layer=layers(),
    share=st.sampled_from([0.01, 0.2]),
    seed=st.integers(0, 2**32 - 1),
)
def test_tiled_dense_grad_var_keeps_the_reference_results_with_inf_and_nan(layer, share, seed):
    """Property 2: the reference accepts infinities and NaN (docs/algorithm.md section 2.1:
    defined, not refused). With a drawn share of +-inf and NaN in x and D, every element
    that is not NaN in the reference has its bits, and the NaN are in the same places."""
    x, delta = (a.copy() for a in layer)
    rng = np.random.default_rng(seed)
    special = np.array([np.inf, -np.inf, np.nan], F32)
    for a in (x, delta):
        hit = rng.random(a.shape) < share
        a[hit] = rng.choice(special, size=int(hit.sum()))
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, 0 * inf: NaN, as defined
        want_all = reference(x, delta)
    for name, got, want in zip(NAMES, fast.dense_grad_var(x, delta), want_all):
        nan = np.isnan(want)
        np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{name}: NaN in other places")
        assert_same_bits(np.where(nan, F32(0), got), np.where(nan, F32(0), want), name)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("path", ["serial", "parallel"])
def test_serial_and_parallel_paths_give_the_same_bits(monkeypatch, path, threads):
    """Both compilations (the serial one below DENSE_SERIAL_BELOW multiply-adds, the
    parallel one above), and the parallel one with 1 and 2 threads, on a layer with
    ragged edges on both axes: the reference's bits (a thread owns whole rows)."""
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    monkeypatch.setattr(fast, "DENSE_SERIAL_BELOW", 1 << 62 if path == "serial" else 0)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((131, 45), dtype=F32)
    delta = (rng.standard_normal((131, 70)) / 131).astype(F32)
    saved = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        got = fast.dense_grad_var(x, delta)
    finally:
        numba.set_num_threads(saved)
    for name, a, want in zip(NAMES, got, reference(x, delta)):
        assert_same_bits(a, want, name)


def test_tiled_products_take_any_layout_and_are_the_registry_path():
    """Strided and Fortran-ordered operands give the same bits (packing copies them), the
    product alone equals vgc_ref.portable.matmul_tn, and numba-cpu's registry entry is
    this kernel."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 50), dtype=F32)
    b = rng.standard_normal((40, 35), dtype=F32)
    want = ref_portable.matmul_tn(a, b)
    assert_same_bits(fast.tiled_matmul_tn(a, b), want, "A^T B")
    assert_same_bits(fast.tiled_matmul_tn(np.asfortranarray(a), np.asfortranarray(b)), want, "Fortran")
    wide = rng.standard_normal((40, 100), dtype=F32)
    assert_same_bits(
        fast.tiled_matmul_tn(wide[:, ::2], b), ref_portable.matmul_tn(wide[:, ::2], b), "strided"
    )
    assert get_backend("numba-cpu").dense_grad_var is fast.dense_grad_var
    assert get_backend("numba-cpu").conv_grad_var is numba_conv.conv_grad_var
    with pytest.raises(InputError):
        fast.tiled_matmul_tn(a, b[:-1])


PRODUCTS = {  # name: (operand shapes from (m, K, n), the reference)
    "matmul": (lambda m, k, n: ((m, k), (k, n)), ref_portable.matmul),
    "matmul_tn": (lambda m, k, n: ((k, m), (k, n)), ref_portable.matmul_tn),
    "matmul_nt": (lambda m, k, n: ((m, k), (n, k)), ref_portable.matmul_nt),
}


@given(
    name=st.sampled_from(sorted(PRODUCTS)),
    mkn=st.tuples(lengths(), lengths(), lengths()),
    tiled_from=st.sampled_from(["measured", "always", "never"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_demos_ordered_products_give_the_reference_bits(name, mkn, tiled_from, seed):
    """numba_cpu.matmul, matmul_tn and matmul_nt (the products of the demo's ``--products
    ordered``): the tiled kernel from TILED_FROM multiply-adds on, numba_portable's below;
    with the measured threshold, and with every call sent down each path, the results are
    vgc_ref.portable's bits on shapes up to 300 on each axis (ragged tiles included)."""
    threshold = {"measured": fast.TILED_FROM, "always": 0, "never": 1 << 62}[tiled_from]
    shapes, want = PRODUCTS[name]
    rng = np.random.default_rng(seed)
    a, b = (
        rng.standard_normal(shape, dtype=F32) * F32(2.0 ** rng.integers(-20, 20)) for shape in shapes(*mkn)
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fast, "TILED_FROM", threshold)
        got = getattr(fast, name)(a, b)
    assert_same_bits(got, want(a, b), name)


def test_the_demos_ordered_namespace_is_the_tiled_products():
    """mpi_demo's ``--products ordered`` takes its products from numba_cpu (the tiled
    path) and its sums, exp and log from numba_portable; a wrong shape is refused as the
    reference refuses it."""
    from mpi_demo import model
    from vgc_ref.backends import numba_portable

    ops = model.products("ordered")
    assert (ops.matmul, ops.matmul_tn, ops.matmul_nt) == (fast.matmul, fast.matmul_tn, fast.matmul_nt)
    assert ops.column_sums is numba_portable.column_sums and ops.exp32 is numba_portable.exp32
    a = np.ones((3, 4), F32)
    for name, (shapes, _) in PRODUCTS.items():
        x, y = (np.ones(s, F32) for s in shapes(3, 4, 5))
        with pytest.raises(InputError):
            getattr(fast, name)(x, y[:-1] if name != "matmul_nt" else y[:, :-1])
    with pytest.raises(InputError):
        fast.matmul(a.astype(np.float64), a.T)


@st.composite
def conv_layers(draw):
    """patches float32[B, P, K] and delta float32[B, P, out]; B*P up to 300 rows."""
    batch = draw(st.integers(1, 12), label="B")
    positions = draw(st.integers(1, 25), label="P")
    k, n_out = draw(lengths(), label="K"), draw(lengths(), label="out")
    x = draw(matrices(batch * positions, k, "patches")).reshape(batch, positions, k)
    delta = draw(matrices(batch * positions, n_out, "delta")).reshape(batch, positions, n_out)
    return x, delta


@given(layer=conv_layers(), form=st.sampled_from(CONV_VARIANCE_FORMS))
def test_tiled_conv_grad_var_gives_the_reference_bits_on_every_shape(layer, form):
    """Property 1 for a convolution (docs/algorithm.md section 2.1), both forms: the exact
    form's squared per-sample products (segments of P rows) and the approximation's
    product, K and out with ragged tile edges: all four results are the reference's bits."""
    x, delta = layer
    with np.errstate(over="ignore"):  # the exact form's squares may overflow: +inf, as defined
        want = conv_grad_var(x, delta, form)
        got = numba_conv.conv_grad_var(x, delta, form)
    for name, a, w in zip(NAMES, got, want):
        assert_same_bits(a, w, f"{form} {name}")


def test_squared_products_refuse_a_segment_that_does_not_divide_the_rows():
    a = np.ones((6, 3), F32)
    for seg in (0, 4, -1):
        with pytest.raises(InputError):
            fast.tiled_squared_products(a, a, seg)


# --------------------------------------------------------------------------------------
# Property 3: the assembly of the hot loop
# --------------------------------------------------------------------------------------

FMA = re.compile(r"\bvf(n?)m(add|sub)\w*")
PACKED_MUL = re.compile(r"\bv?mulps\b[^\n]*%([xyz])mm\d+\s*$", re.M)
PACKED_ADD = re.compile(r"\bv?addps\b[^\n]*%([xyz])mm\d+\s*$", re.M)
SCALAR_ARITH = re.compile(r"\bv?(mul|add)ss\b")
ANY_MUL = re.compile(r"\bv?(f(n?)m(add|sub)\w*|mul[sp]s)\b")
LANES = {"x": 4, "y": 8, "z": 16}  # float32 lanes of an xmm, ymm, zmm register


def hot_loop_problems(asm: str) -> list[str]:
    """What is wrong with the kernel's hot loop, from its assembly ([] if nothing).

    The kernel's only float arithmetic is the tile's multiply-adds (packing, zeroing and
    storing move data only), so the basic blocks that hold a multiply are the hot loop:
    they must hold no FMA and no scalar multiply or add, and packed multiplies and adds
    whose lanes cover every output of a tile (TILE_I x TILE_J).
    """
    blocks = re.split(r"\n(?=\.?\w+:)", asm)
    hot = [b for b in blocks if ANY_MUL.search(b)]
    if not hot:
        return ["no multiply at all in the assembly"]
    text = "\n".join(hot)
    problems = []
    if FMA.search(text):
        problems.append(f"FMA instructions {sorted({m.group(0) for m in FMA.finditer(text)})}")
    if SCALAR_ARITH.search(text):
        problems.append(f"{len(SCALAR_ARITH.findall(text))} scalar multiplies/adds (mulss/addss)")
    need = fast.TILE_I * fast.TILE_J
    for what, pattern in (("multiplies", PACKED_MUL), ("adds", PACKED_ADD)):
        lanes = sum(LANES[reg] for reg in pattern.findall(text))
        if lanes < need:
            problems.append(f"packed {what} cover {lanes} lanes, want >= {need} (the tile)")
    return problems


def _asm(kernel) -> str:
    return kernel.inspect_asm(kernel.signatures[0])


def _fresh(kind: str, parallel: bool, **options):
    """The generated kernel again, uncached (a cached dispatcher has no assembly to show)."""
    kernel = fast._tiled_kernel(kind, parallel, cache=False, name=f"_{kind}_asm_check")
    if options:
        kernel = njit(parallel=parallel, **{**fast._JIT, "cache": False, **options})(kernel.py_func)
    return kernel


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "serial"])
@pytest.mark.parametrize("kind", list(fast.TILED_KINDS))
def test_hot_loop_is_packed_and_has_no_fma(kind, parallel):
    """Property 3 on every kernel (the product; the squared products of the exact
    convolution variance) and both compilations, compiled as the backend compiles them."""
    kernel = _fresh(kind, parallel)
    fast._compile_with_slp(kernel, fast.TILED_KINDS[kind][1])
    assert hot_loop_problems(_asm(kernel)) == []


def test_the_checks_have_teeth():
    """Without the SLP vectorizer the same kernel is scalar, and with fastmath (contraction
    allowed) it uses FMA on a CPU that has it: the check reports both. The SLP setting is
    restored after the backend's compilation."""
    saved = numba.config.SLP_VECTORIZE
    signature = fast.TILED_KINDS["product"][1]
    scalar = _fresh("product", False)
    scalar.compile(signature)
    if not saved:  # Numba's default (NUMBA_SLP_VECTORIZE=0)
        assert any("scalar" in p for p in hot_loop_problems(_asm(scalar)))
    fused = _fresh("product", False, fastmath=True)
    fast._compile_with_slp(fused, signature)
    assert numba.config.SLP_VECTORIZE == saved
    if not FMA.search(_asm(fused)):
        pytest.skip("this CPU (or LLVM target) has no FMA instructions")
    assert any("FMA" in p for p in hot_loop_problems(_asm(fused)))
