"""The PyTorch replica (examples/torch_replica) against the reference: piece by piece, then whole runs.

The replica is written from the documentation alone and imports neither ``mpi_demo`` nor
``vgc_ref``; these tests are where the two meet. The pieces (generator, portable primitives,
VGC step, messages, aggregation) are checked bit for bit against vgc_ref on random inputs; the
whole job is checked by ``python -m mpi_demo compare`` on the two traces.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip(
    "torch", reason="the PyTorch replica needs torch: pip install -e '.[torch]' (CPU wheel)"
)

import vgc_ref  # noqa: E402
from vgc_ref import portable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REPLICA_PATH = ROOT / "examples" / "torch_replica" / "replica.py"


def _load_replica():
    spec = importlib.util.spec_from_file_location("torch_replica", REPLICA_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["torch_replica"] = module
    spec.loader.exec_module(module)
    return module


replica = _load_replica()
torch.set_num_threads(1)

# --------------------------------------------------------------------------------------------
# Generator: the replica's tensor SplitMix64 against the formulas on Python integers
# --------------------------------------------------------------------------------------------

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _bits(k: int, i: int) -> int:
    return _mix((k + (i + 1) * GOLDEN) & M64)


def _as_u64(t) -> list[int]:
    return [v & M64 for v in t.tolist()]


@given(
    seed=st.integers(0, 2**32 - 1),
    tags=st.lists(st.integers(0, 2**20), max_size=3),
    start=st.integers(0, 2**40),
    m=st.integers(1, 2**32),
)
def test_generator_equals_the_documented_formulas_on_integers(seed, tags, start, m):
    """bits, uniform, below and normal on int64 tensors equal the uint64 formulas of docs/demo.md."""
    k = _mix((seed + GOLDEN) & M64)
    for t in tags:
        k = _mix(((k ^ t) + GOLDEN) & M64)
    assert replica.key(seed, *tags) == k
    idx = torch.arange(start, start + 40, dtype=torch.int64)
    expected = [_bits(k, i) for i in range(start, start + 40)]
    assert _as_u64(replica.bits(k, idx)) == expected
    assert replica.uniform(k, idx).tolist() == [float(b >> 11) * 2.0**-53 for b in expected]
    assert replica.below(k, idx, m).tolist() == [((b >> 32) * m) >> 32 for b in expected]
    normals = replica.normal(k, idx[:3]).tolist()
    for i, value in zip(range(start, start + 3), normals):
        acc = 0.0
        for j in range(12):
            acc += float(_bits(k, 12 * i + j) >> 11) * 2.0**-53
        assert value == acc - 6.0


@given(seed=st.integers(0, 2**64 - 1), n=st.integers(0, 300))
def test_permutation_sorts_by_unsigned_bits(seed, n):
    """permutation(K, n) is 0..n-1 sorted by bits(K, i) as unsigned integers, ties to the lower i."""
    expected = sorted(range(n), key=lambda i: (_bits(seed, i), i))
    assert replica.permutation(seed, n).tolist() == expected


# --------------------------------------------------------------------------------------------
# Portable primitives against vgc_ref.portable
# --------------------------------------------------------------------------------------------


def _f32_from_bits(start: int, stop: int, step: int) -> np.ndarray:
    return np.arange(start, stop, step, dtype=np.int64).astype(np.uint32).view(np.float32)


def test_exp32_log32_equal_the_reference_on_a_sweep_of_float32():
    """Every 4099th float32 of exp32's finite domain and of log32's positive finite one, bit for bit."""
    neg = _f32_from_bits(0x80000000, 0x80000000 + 0x42D00001, 4099)  # -0.0 .. -104
    pos = _f32_from_bits(0, 0x42B20001, 4099)  # +0.0 .. 89
    x = np.concatenate([neg, pos, np.float32([88.72, 88.8, 89.0, -103.9, -104.0, -104.1, 200.0, -200.0])])
    got = replica.exp32(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got.view(np.uint32), portable.exp32(x).view(np.uint32))
    y = _f32_from_bits(1, 0x7F800000, 4099)  # the smallest subnormal .. the largest finite
    got = replica.log32(torch.from_numpy(y)).numpy()
    np.testing.assert_array_equal(got.view(np.uint32), portable.log32(y).view(np.uint32))


@given(st.lists(st.floats(-104.0, 0.0, width=32), min_size=1, max_size=50))
def test_exp32_within_one_ulp_of_exp(values):
    """exp32 is within one float32 ulp of float32(math.exp(x)) on the softmax's inputs."""
    x = np.float32(values)
    got = replica.exp32(torch.from_numpy(x)).numpy()
    want = np.float32([math.exp(float(v)) for v in x])
    assert np.all(np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32).astype(np.int64)) <= 1)


def _f32_arrays(shape, seed, scale):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@given(
    m=st.integers(1, 7),
    k=st.integers(0, 40),
    n=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1.0, 1e-20, 1e18]),
)
def test_ordered_products_and_sums_equal_the_reference(m, k, n, seed, scale):
    """mm, mm with transposed operands and rowsum equal vgc_ref.portable's, bit for bit."""
    a = _f32_arrays((m, k), seed, scale)
    b = _f32_arrays((k, n), seed + 1, scale)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_array_equal(
        replica.mm(ta, tb).numpy().view(np.uint32), portable.matmul(a, b).view(np.uint32)
    )
    at = np.ascontiguousarray(a.T)  # (k, m)
    np.testing.assert_array_equal(
        replica.mm(torch.from_numpy(at).T, tb).numpy().view(np.uint32),
        portable.matmul_tn(at, b).view(np.uint32),
    )
    bt = np.ascontiguousarray(b.T)  # (n, k)
    np.testing.assert_array_equal(
        replica.mm(ta, torch.from_numpy(bt).T).numpy().view(np.uint32),
        portable.matmul_nt(a, bt).view(np.uint32),
    )
    np.testing.assert_array_equal(
        replica.rowsum(ta).numpy().view(np.uint32), portable.row_sums(a).view(np.uint32)
    )


# --------------------------------------------------------------------------------------------
# VGC step, messages and aggregation against vgc_ref
# --------------------------------------------------------------------------------------------


@given(
    n=st.integers(0, 300),
    ranks=st.integers(1, 3),
    steps=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    alpha=st.sampled_from([0.5, 2.0, 8.0]),
    zeta=st.sampled_from([0.0, 0.9, 0.999, 1.0]),
    tau=st.sampled_from([0.0, 0.0, 0.05]),
    residual=st.sampled_from(["feedback", "reset"]),
    spread=st.sampled_from([1.0, 1e-3, 1e6]),
)
def test_vgc_step_messages_and_aggregation_equal_the_reference(
    n, ranks, steps, seed, alpha, zeta, tau, residual, spread
):
    """Several steps of every rank: r, v, message bytes and g_hat equal vgc_ref's bit for bit."""
    rng = np.random.default_rng(seed)
    params = vgc_ref.VGCParams(alpha=alpha, zeta=zeta, tau=tau, residual=residual)
    states = [vgc_ref.SegmentState.zeros(n, segment_id=0) for _ in range(ranks)]
    r = torch.zeros((ranks, n), dtype=torch.float32)
    v = torch.zeros((ranks, n), dtype=torch.float32)
    a32, z32, t32 = (torch.tensor(x, dtype=torch.float32) for x in (alpha, zeta, tau))
    for _ in range(steps):
        # magnitudes over many binades, so that k > 15 and the rounding threshold both occur
        g = (rng.standard_normal((ranks, n)) * spread ** rng.uniform(-1, 1, (ranks, n))).astype(np.float32)
        s = (np.abs(rng.standard_normal((ranks, n))) * 0.1).astype(np.float32) * g * g
        r, v, packets = replica.vgc_step(
            r, v, torch.from_numpy(g), torch.from_numpy(s), a32, z32, t32, residual, 0
        )
        ref_packets = [vgc_ref.vgc_step(states[w], g[w], s[w], params) for w in range(ranks)]
        messages = []
        for w in range(ranks):
            np.testing.assert_array_equal(r[w].numpy().view(np.uint32), states[w].r.view(np.uint32))
            np.testing.assert_array_equal(v[w].numpy().view(np.uint32), states[w].v.view(np.uint32))
            msg, segments = replica.encode_message([packets[w]])
            assert msg == vgc_ref.encode_message([ref_packets[w]])
            decoded = vgc_ref.decode_message(msg)[0]
            assert decoded.param == ref_packets[w].param
            np.testing.assert_array_equal(decoded.words, ref_packets[w].words)
            assert segments == [msg[12:-4]]
            messages.append(msg)
        mine = replica.decode_accumulate(messages, [n])[0].numpy()
        np.testing.assert_array_equal(
            mine.view(np.uint32), vgc_ref.decode_accumulate(messages, [n])[0].view(np.uint32)
        )


@given(
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=4),
    ranks=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_dense_messages_equal_the_reference(sizes, ranks, seed):
    """DENSE messages of several segments (with -0.0 and subnormals) and their mean equal vgc_ref's."""
    rng = np.random.default_rng(seed)
    messages = []
    for _ in range(ranks):
        gs = [_f32_arrays(n, int(rng.integers(2**32)), 1.0) for n in sizes]
        for g in gs:
            g[: len(g) // 3] *= np.float32(1e-40)  # subnormals, and -0.0 where rounded away
        packets = [replica.dense_packets(torch.from_numpy(g)[None, :], j)[0] for j, g in enumerate(gs)]
        msg, _ = replica.encode_message(packets)
        assert msg == vgc_ref.encode_message([vgc_ref.dense_packet(j, g) for j, g in enumerate(gs)])
        messages.append(msg)
    mine = replica.decode_accumulate(messages, sizes)
    for a, b in zip(mine, vgc_ref.decode_accumulate(messages, sizes)):
        np.testing.assert_array_equal(a.numpy().view(np.uint32), b.view(np.uint32))


@given(
    n=st.integers(0, 300),
    ranks=st.integers(1, 3),
    steps=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    tau=st.sampled_from([0.25, 1e-3, 3e-40]),
)
def test_strom_step_and_messages_equal_the_reference(n, ranks, steps, seed, tau):
    """Strom steps of every rank: r, STROM message bytes and g_hat equal vgc_ref's bit for bit."""
    rng = np.random.default_rng(seed)
    params = vgc_ref.StromParams(tau)
    states = [vgc_ref.SegmentState.zeros(n, segment_id=0) for _ in range(ranks)]
    r = torch.zeros((ranks, n), dtype=torch.float32)
    t32 = torch.tensor(tau, dtype=torch.float32)
    for _ in range(steps):
        scale = tau * 2.0 ** rng.integers(-3, 3, (ranks, n))
        g = (rng.standard_normal((ranks, n)) * scale).astype(np.float32)
        g[:, ::7] = np.float32(tau)  # |r| == tau exactly on the first step: sent
        r, packets = replica.strom_step(r, torch.from_numpy(g), t32, "feedback", 0)
        ref_packets = [vgc_ref.strom_step(states[w], g[w], params) for w in range(ranks)]
        messages = []
        for w in range(ranks):
            np.testing.assert_array_equal(r[w].numpy().view(np.uint32), states[w].r.view(np.uint32))
            msg, _ = replica.encode_message([packets[w]])
            assert msg == vgc_ref.encode_message([ref_packets[w]])
            messages.append(msg)
        mine = replica.decode_accumulate(messages, [n])[0].numpy()
        np.testing.assert_array_equal(
            mine.view(np.uint32), vgc_ref.decode_accumulate(messages, [n])[0].view(np.uint32)
        )


@given(
    batch=st.integers(1, 5),
    ranks=st.integers(1, 3),
    positions=st.integers(1, 6),
    k=st.integers(1, 7),
    out=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    form=st.sampled_from(["exact", "approx"]),
)
def test_conv_grad_var_equals_the_reference(batch, ranks, positions, k, out, seed, form):
    """A convolution's g and s (docs/algorithm.md 2.1), per rank of uneven shards, equal vgc_ref's."""
    total = batch * ranks + (ranks - 1)  # shards of batch + 1 and batch samples
    rng = np.random.default_rng(seed)
    X = _f32_arrays((total, positions, k), int(rng.integers(2**32)), 1.0)
    X[X < 0] = 0.0  # post-ReLU inputs, with zeros
    D = _f32_arrays((total, positions, out), int(rng.integers(2**32)), 1e-2)
    shards = replica.shard_layout(total, ranks)
    sh = replica.Shards.of(shards)
    gw, gb, sw, sb = replica.conv_grad_var(torch.from_numpy(X), torch.from_numpy(D), sh, form)
    for w, (start, stop) in enumerate(shards):
        ref_gw, ref_sw, ref_gb, ref_sb = vgc_ref.conv_grad_var(X[start:stop], D[start:stop], form)
        for mine, ref in ((gw, ref_gw), (gb, ref_gb), (sw, ref_sw), (sb, ref_sb)):
            np.testing.assert_array_equal(mine[w].numpy().view(np.uint32), ref.reshape(-1).view(np.uint32))


def test_decoder_rejects_a_corrupt_message():
    """A flipped bit fails the replica's CRC check; a message with a missing segment is refused."""
    g = torch.ones((1, 4), dtype=torch.float32)
    msg, _ = replica.encode_message(replica.dense_packets(g, 0))
    bad = bytearray(msg)
    bad[25] ^= 1
    with pytest.raises(replica.MessageError, match="CRC"):
        replica.decode_values(bytes(bad), [4])
    with pytest.raises(replica.MessageError, match="layout"):
        replica.decode_values(msg, [4, 4])


# --------------------------------------------------------------------------------------------
# Whole runs: the replica's trace against the demo's
# --------------------------------------------------------------------------------------------


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def _compare(tmp_path: Path, demo_args: list[str], replica_args: list[str]) -> str:
    ref, mine = tmp_path / "demo.jsonl", tmp_path / "replica.jsonl"
    demo = _run(["-m", "mpi_demo", "train", "--no-progress", "--trace", str(ref), *demo_args])
    assert demo.returncode == 0, demo.stderr
    rep = _run([str(REPLICA_PATH), "--trace", str(mine), *replica_args])
    assert rep.returncode == 0, rep.stderr
    cmp = _run(["-m", "mpi_demo", "compare", str(ref), str(mine)])
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    return cmp.stdout


@pytest.mark.parametrize("method", ["vgc", "none"])
def test_first_steps_equal_the_committed_golden_trace(tmp_path, method):
    """20 steps of the default job on 4 ranks equal tests/golden/demo_trace_METHOD.jsonl (no demo run)."""
    mine = tmp_path / "replica.jsonl"
    rep = _run([str(REPLICA_PATH), "--ranks", "4", "--steps", "20", "--method", method, "--trace", str(mine)])
    assert rep.returncode == 0, rep.stderr
    golden = ROOT / "tests" / "golden" / f"demo_trace_{method}.jsonl"
    cmp = _run(["-m", "mpi_demo", "compare", str(golden), str(mine)])
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    assert cmp.stdout.startswith("identical: 20 steps, 4 ranks")


CNN_GOLDEN = {
    "demo_trace_cnn_exact.jsonl": ["--dataset", "mnist1d"],
    "demo_trace_cnn_approx_10k.jsonl": ["--dataset", "mnist1d-10k", "--variance", "approx"],
}


@pytest.mark.parametrize("name", sorted(CNN_GOLDEN))
def test_cnn_first_steps_equal_the_committed_golden_trace(tmp_path, name):
    """10 steps of the default CNN (32 channels) on 4 ranks equal tests/golden/NAME (no demo run)."""
    golden = ROOT / "tests" / "golden" / name
    mine = tmp_path / "replica.jsonl"
    args = ["--ranks", "4", "--model", "cnn", "--steps", "10", *CNN_GOLDEN[name], "--trace", str(mine)]
    rep = _run([str(REPLICA_PATH), *args])
    assert rep.returncode == 0, rep.stderr
    cmp = _run(["-m", "mpi_demo", "compare", str(golden), str(mine)])
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    assert cmp.stdout.startswith("identical: 10 steps, 4 ranks")


OTHER_CONFIGURATIONS = {
    # 3 ranks over a batch of 64: shards of 22, 21, 21; the magnitude floor of the hybrid
    "hybrid-uneven": (3, ["--method", "hybrid", "--tau", "0.001", "--steps", "30"]),
    # another seed and data set size, four layers, shards of 8, 8, 7, 7, reset residual
    "reset-deep": (
        4,
        "--seed 7 --hidden 16,16,8 --batch 30 --samples 900 --features 12 --classes 5 --residual reset "
        "--alpha 1.5 --zeta 0.9 --lr 0.1 --steps 60 --checksum-every 7 --test-fraction 0.25".split(),
    ),
    # the two learning-rate schedules over a whole two-epoch run (150 steps): the cosine's
    # series and the step decays at steps 75 and 113
    "lr-cosine": (2, "--lr-schedule cosine --epochs 2 --steps 150 --checksum-every 25".split()),
    "lr-step": (3, "--lr-schedule step --epochs 2 --steps 150 --checksum-every 25".split()),
}


@pytest.mark.parametrize("name", sorted(OTHER_CONFIGURATIONS))
def test_other_configurations_give_the_demos_trace(tmp_path, name):
    """Uneven shards, the hybrid, reset, another model and data set: the traces compare identical."""
    ranks, args = OTHER_CONFIGURATIONS[name]
    out = _compare(tmp_path, ["--simulate-ranks", str(ranks), *args], ["--ranks", str(ranks), *args])
    assert out.startswith(f"identical: {args[args.index('--steps') + 1]} steps, {ranks} ranks")


CNN = "--model cnn --dataset".split()

CNN_AND_BASELINES = {
    # the CNN on MNIST-1D, exact convolution variance: batch 200 in shards of 67, 67, 66,
    # 20 steps per epoch, so the run crosses two epoch orders and evaluates three times
    "cnn-exact": (
        3,
        [*CNN, "mnist1d", "--channels", "4,4,4", "--batch", "200", "--steps", "45", "--checksum-every", "9"],
    ),
    # the approximation on the 10,000-signal test split, other widths, past the first epoch
    "cnn-approx-10k": (
        4,
        [*CNN, "mnist1d-10k", "--variance", "approx", "--channels", "4,5,6", "--steps", "64"],
    ),
    # Strom's threshold and the STROM codec on the default MLP
    "strom": (4, ["--method", "strom", "--tau", "0.01", "--steps", "40"]),
    # top-k on the default MLP, the default fraction, uneven shards
    "topk": (3, ["--method", "topk", "--steps", "40"]),
    # top-k on the CNN: 0.07 * 100 is 7.000000000000001 in float64, so conv0.W sends 8
    "topk-cnn-ceil": (
        2,
        [*CNN, "mnist1d", "--channels", "20,4,4", "--method", "topk", "--fraction", "0.07", "--steps", "15"],
    ),
}


@pytest.mark.parametrize("name", sorted(CNN_AND_BASELINES))
def test_cnn_strom_and_topk_give_the_demos_trace(tmp_path, name):
    """The CNN (both variance forms, both MNIST-1D test splits), Strom and top-k compare identical."""
    ranks, args = CNN_AND_BASELINES[name]
    out = _compare(tmp_path, ["--simulate-ranks", str(ranks), *args], ["--ranks", str(ranks), *args])
    assert out.startswith(f"identical: {args[args.index('--steps') + 1]} steps, {ranks} ranks")


def test_a_different_configuration_is_found_different(tmp_path):
    """compare sees the replica's alpha: the check above is not vacuous."""
    ref, mine = tmp_path / "demo.jsonl", tmp_path / "replica.jsonl"
    assert (
        _run(
            [
                "-m",
                "mpi_demo",
                "train",
                "--no-progress",
                "--simulate-ranks",
                "2",
                "--steps",
                "3",
                "--trace",
                str(ref),
            ]
        ).returncode
        == 0
    )
    assert (
        _run(
            [str(REPLICA_PATH), "--ranks", "2", "--steps", "3", "--alpha", "2.5", "--trace", str(mine)]
        ).returncode
        == 0
    )
    cmp = _run(["-m", "mpi_demo", "compare", str(ref), str(mine)])
    assert cmp.returncode == 1
    assert "alpha = 2.0 vs 2.5" in cmp.stdout


@pytest.mark.slow
@pytest.mark.parametrize("method", ["vgc", "none"])
def test_whole_default_run_gives_the_demos_trace(tmp_path, method):
    """The default configuration on 4 simulated ranks, all 600 steps: the traces compare identical."""
    out = _compare(
        tmp_path,
        ["--simulate-ranks", "4", "--method", method],
        ["--ranks", "4", "--method", method],
    )
    assert out.startswith("identical: 600 steps, 4 ranks")
