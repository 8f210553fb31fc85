"""The demo's arithmetic is a function of the configuration alone (docs/demo.md "Arithmetic of one step").

* data, initial parameters and epoch orders equal a plain-Python transcription of the
  documented formulas, bit for bit;
* the ordered model's g and s agree with a float64 computation (the model is still right)
  and the Numba kernels give the NumPy reference primitives' bits (test_mpi_demo.py checks
  that they are vgc_ref.dense_grad_var's bits);
* the trace is the same bytes under several OpenBLAS kernels, 1 and 2 Numba threads and
  both CPU backends (subprocesses), and equals a committed golden trace;
* ``--dump-inputs`` / ``python -m vgc_ref.conformance --replay`` check a compressor on the
  run's real gradients and name the first differing step, rank and segment.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_rng import py_bits, py_key, py_normal

from mpi_demo import cli, comm, data, model, trace
from mpi_demo.config import ConfigError, TrainConfig
from mpi_demo.train import run_training
from vgc_ref.conformance import replay

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
SMALL = dict(samples=600, hidden=(16,), batch=32, steps=30, checksum_every=5, progress=False)
SMALL_ARGS = ["--samples", "600", "--hidden", "16", "--batch", "32", "--steps", "30", "--checksum-every", "5"]


def small(**changes) -> TrainConfig:
    return TrainConfig(**{**SMALL, **changes})


# --------------------------------------------------------------------------------------
# Data and initial parameters: the documented formulas in plain Python floats
# --------------------------------------------------------------------------------------


def py_uniform(k: int, i: int) -> float:
    return float(py_bits(k, i) >> 11) * 2.0**-53


def py_below(k: int, i: int, m: int) -> int:
    return ((py_bits(k, i) >> 32) * m) >> 32


def py_synthetic(seed: int, n: int, f_dim: int, c_dim: int):
    """docs/demo.md "Synthetic task", written out with Python floats (IEEE binary64)."""
    kc, ka, kz, km, kn, kf, kl = (py_key(seed, 0, t) for t in range(7))
    centre = [[2.0 * py_normal(kc, 8 * c + d) for d in range(8)] for c in range(4 * c_dim)]
    cluster = [py_below(ka, s, 4 * c_dim) for s in range(n)]
    z = [[centre[cluster[s]][d] + py_normal(kz, 8 * s + d) for d in range(8)] for s in range(n)]
    mp = [[py_normal(km, f_dim * d + f) * (1.0 / math.sqrt(8.0)) for f in range(f_dim)] for d in range(8)]
    x, y = [], []
    for s in range(n):
        row = []
        for f in range(f_dim):
            a = 0.0
            for d in range(8):
                a = a + z[s][d] * mp[d][f]
            row.append(a / (1.0 + abs(a)) + 0.3 * py_normal(kn, f_dim * s + f))
        x.append(row)
        label = cluster[s] // 4
        if py_uniform(kf, s) < 0.05:
            label = py_below(kl, s, c_dim)
        y.append(label)
    return x, y


def test_synthetic_task_is_the_documented_formula():
    """The raw samples and labels equal a plain-Python transcription of docs/demo.md, bit for bit."""
    x, y = data.synthetic_task(5, 40, 6, 3)
    want_x, want_y = py_synthetic(5, 40, 6, 3)
    assert x.tolist() == want_x
    assert y.tolist() == want_y


def test_split_and_standardisation_are_the_documented_formula():
    """Split by permutation(key(seed, 0, 7)), mean and variance summed in order, one float32 rounding."""
    seed, n, f_dim, n_test = 2, 30, 4, 7
    raw, labels = data.synthetic_task(seed, n, f_dim, 3)
    x_train, y_train, x_test, y_test = data.split_standardise(raw, labels, n_test, seed)
    k = py_key(seed, 0, 7)
    order = sorted(range(n), key=lambda i: (py_bits(k, i), i))
    train = [raw[i].tolist() for i in order[n_test:]]
    mean, std = [], []
    for f in range(f_dim):
        total = 0.0
        for row in train:
            total = total + row[f]
        m = total / len(train)
        total = 0.0
        for row in train:
            total = total + (row[f] - m) * (row[f] - m)
        mean.append(m)
        std.append(math.sqrt(total / len(train)) or 1.0)
    want_test = [[(raw[i][f] - mean[f]) / std[f] for f in range(f_dim)] for i in order[:n_test]]
    assert x_test.dtype == np.float32
    assert x_test.tolist() == np.array(want_test, np.float64).astype(np.float32).tolist()
    assert y_test.tolist() == [int(labels[i]) for i in order[:n_test]]
    assert y_train.tolist() == [int(labels[i]) for i in order[n_test:]]
    assert x_train.shape == (n - n_test, f_dim)


def test_initial_parameters_and_epoch_order_are_the_documented_formula():
    sizes = (3, 5, 2)
    params = model.init_params(sizes, 9)
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        k = py_key(9, 1, layer)
        scale = math.sqrt(2.0 / n_in)
        want = [py_normal(k, n_out * i + j) * scale for i in range(n_in) for j in range(n_out)]
        assert params[2 * layer].tolist() == np.array(want).astype(np.float32).tolist()
        b = params[2 * layer + 1]
        assert b.tolist() == [0.0] * n_out and not np.signbit(b).any()
    k = py_key(9, 2, 4)
    assert data.epoch_order(9, 4, 50).tolist() == sorted(range(50), key=lambda i: (py_bits(k, i), i))


# --------------------------------------------------------------------------------------
# The model: still right, and the kernels are the reference primitives
# --------------------------------------------------------------------------------------


def _batch(seed: int, sizes, batch: int):
    rng = np.random.default_rng(seed)
    params = model.init_params(sizes, seed)
    for p in params[1::2]:
        p[...] = rng.normal(0, 0.1, p.shape)
    x = rng.normal(size=(batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    return params, x, y


def _g_s_loss(params, sizes, x, y, ops):
    xs, logits = model.forward(params, sizes, x, ops)
    loss, probs = model.softmax_xent(logits, y, ops)
    deltas = model.backward(params, sizes, xs, probs, y, ops)
    return model.weight_grads(xs, deltas, ops), model.variance_terms(xs, deltas, ops), loss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ordered_gradients_agree_with_float64(seed):
    """Ordered float32 g, s and loss are within float32 rounding of the float64 computation.

    The float64 computation is the finite-difference-checked one of test_mpi_demo.py.
    """
    sizes = (12, 20, 9, 5)
    params, x, y = _batch(seed, sizes, 16)
    g32, s32, loss32 = _g_s_loss(params, sizes, x, y, model.products("ordered"))
    p64 = [p.astype(np.float64) for p in params]
    g64, s64, loss64 = _g_s_loss(p64, sizes, x.astype(np.float64), y, model.products("blas"))
    np.testing.assert_allclose(loss32, loss64, rtol=1e-5, atol=1e-6)
    for j, (a, b) in enumerate(zip(g32, g64)):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6 * np.abs(b).max(), err_msg=f"g {j}")
    for j, (a, b) in enumerate(zip(s32, s64)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6 * np.abs(b).max(), err_msg=f"s {j}")


def test_kernels_give_the_reference_primitives_bits():
    """The model through vgc_ref.portable (NumPy reference) and through the Numba kernels: same bits."""
    from vgc_ref import portable

    sizes = (7, 13, 6, 4)
    params, x, y = _batch(5, sizes, 9)
    a = _g_s_loss(params, sizes, x, y, portable)
    b = _g_s_loss(params, sizes, x, y, model.products("ordered"))
    for u, v in zip([*a[0], *a[1], a[2]], [*b[0], *b[1], b[2]]):
        assert u.tobytes() == v.tobytes()


def test_relu_and_its_mask_give_plus_zero():
    """ReLU is ``y if y > 0 else +0.0``: never -0.0, also where y is -0.0 or a product is -0.0."""
    sizes = (2, 3, 2)
    w0 = np.array([[1.0, -1.0, 0.0], [0.0, 0.0, -0.0]], np.float32)
    b0 = np.array([0.0, 0.0, -0.0], np.float32)
    params = [w0.ravel(), b0, np.ones(6, np.float32), np.zeros(2, np.float32)]
    x = np.array([[0.5, 0.0]], np.float32)
    xs, logits = model.forward(params, sizes, x)
    assert xs[1].tolist() == [[0.5, 0.0, 0.0]] and not np.signbit(xs[1]).any()
    _, probs = model.softmax_xent(logits, np.array([0]))
    deltas = model.backward(params, sizes, xs, probs, np.array([0]))
    assert not np.signbit(deltas[0][0, 1:]).any()


def test_products_blas_runs_and_is_marked_in_the_header(tmp_path):
    path = tmp_path / "blas.jsonl"
    result = run_training(small(ranks=2, products="blas", trace=str(path)))
    assert result.test_accuracy > 0.3
    assert trace.read_trace(path)[0]["config"]["products"] == "blas"


def test_bad_products_is_rejected(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--products", "mkl"])
    assert info.value.code == 2
    assert "--products" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--products 'mkl'"):
        run_training(small(ranks=1, products="mkl"))


# --------------------------------------------------------------------------------------
# The same trace everywhere
# --------------------------------------------------------------------------------------


def _run_subprocess(args: list[str], env_changes: dict[str, str | None]) -> subprocess.CompletedProcess:
    env = comm.mpi_env()
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    cmd = [sys.executable, "-m", "mpi_demo", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    "env,backend",
    [
        ({"OPENBLAS_CORETYPE": None, "NUMBA_NUM_THREADS": "1"}, "numpy"),
        ({"OPENBLAS_CORETYPE": "Haswell", "NUMBA_NUM_THREADS": "2"}, "numpy"),
        ({"OPENBLAS_CORETYPE": "Sandybridge", "NUMBA_NUM_THREADS": "1"}, "numba-cpu"),
        ({"OPENBLAS_CORETYPE": "Prescott", "NUMBA_NUM_THREADS": "2"}, "numba-cpu"),
    ],
    ids=["default-1thread", "haswell-2threads", "sandybridge-numba", "prescott-2threads-numba"],
)
def test_trace_is_the_same_under_every_blas_kernel_thread_count_and_backend(tmp_path, env, backend):
    """Another OpenBLAS kernel, Numba thread count and backend (a subprocess): this process's trace."""
    here = tmp_path / "here.jsonl"
    run_training(small(ranks=3, method="hybrid", tau=0.01, trace=str(here)))
    there = tmp_path / "there.jsonl"
    args = ["train", *SMALL_ARGS, "--simulate-ranks", "3", "--method", "hybrid", "--tau", "0.01"]
    done = _run_subprocess([*args, "--backend", backend, "--trace", str(there)], env)
    assert done.returncode == 0, done.stderr
    assert here.read_bytes() == there.read_bytes(), trace.compare_files(here, there)[1]


#: The committed traces (tests/golden/demo_trace_NAME.jsonl) and the runs that wrote them.
GOLDEN_RUNS = {
    "vgc": dict(method="vgc"),
    "none": dict(method="none"),
    "cnn_exact": dict(dataset="mnist1d", model="cnn", variance="exact", steps=10),
    "cnn_approx_10k": dict(dataset="mnist1d-10k", model="cnn", variance="approx", steps=10),
}


@pytest.mark.parametrize("name", list(GOLDEN_RUNS))
def test_golden_trace(tmp_path, name):
    """The first steps of the default job on 4 simulated ranks equal the committed trace:
    the MLP's first 20 steps with vgc and none, the default CNN's first 10 on MNIST-1D
    (exact variance) and on MNIST-1D with the 10,000 test signals (approximate variance),
    evaluation on the test split included.

    A change of NumPy, Numba, the BLAS, the CPU or of the code that changes any number
    fails here. Regenerate only on purpose, after a change of docs/demo.md's arithmetic:
    ``python -m mpi_demo train --simulate-ranks 4 --steps 20 --method METHOD
    --trace tests/golden/demo_trace_METHOD.jsonl``; for the CNN ``--dataset mnist1d
    --model cnn --variance exact --steps 10`` (``cnn_exact``) and ``--dataset mnist1d-10k
    --model cnn --variance approx --steps 10`` (``cnn_approx_10k``); and bump
    docs/trace.md's version when a record changes.
    """
    path = tmp_path / f"{name}.jsonl"
    run = {"steps": 20, **GOLDEN_RUNS[name]}
    run_training(TrainConfig(ranks=4, trace=str(path), progress=False, **run))
    golden = GOLDEN / f"demo_trace_{name}.jsonl"
    same, report = trace.compare_files(golden, path)
    assert same, report
    assert path.read_bytes() == golden.read_bytes()


# --------------------------------------------------------------------------------------
# --dump-inputs and --replay
# --------------------------------------------------------------------------------------


def _dump(tmp_path: Path, **changes) -> Path:
    directory = tmp_path / "dump"
    run_training(small(ranks=3, steps=6, dump_inputs=str(directory), dump_steps=4, **changes))
    return directory


@pytest.mark.parametrize("method,tau", [("vgc", 0.0), ("strom", 0.01), ("hybrid", 0.01)])
@pytest.mark.parametrize("impl", ["vgc_ref", "backend:numba-cpu"])
def test_replay_of_a_dump_reproduces_every_message(tmp_path, method, tau, impl):
    """4 steps x 3 ranks: the implementation's messages equal the run's, state carried over steps."""
    directory = _dump(tmp_path, method=method, tau=tau)
    index = json.loads((directory / "index.json").read_text())
    assert index["method"] == method and index["ranks"] == 3 and index["steps"] == 4
    pairs = sorted((r["step"], r["rank"]) for r in index["records"])
    assert pairs == [(t, w) for t in range(4) for w in range(3)]
    result = replay.replay(directory, impl)
    assert result.difference is None and result.messages == 12


def test_replay_dump_messages_are_the_trace_messages(tmp_path):
    """The dumped messages are the ones the trace records (same SHA-256 per step and rank)."""
    directory = tmp_path / "dump"
    path = tmp_path / "t.jsonl"
    run_training(small(ranks=2, steps=3, dump_inputs=str(directory), dump_steps=3, trace=str(path)))
    steps = [r for r in trace.read_trace(path) if r["type"] == "step"]
    index = json.loads((directory / "index.json").read_text())
    for rec in index["records"]:
        assert steps[rec["step"]]["ranks"][rec["rank"]]["sha256"] == rec["sha256"]


def test_replay_names_the_first_differing_step_rank_and_segment(tmp_path, capsys):
    """A g changed at step 2, rank 1, segment 2 (and everything after) is reported there."""
    directory = _dump(tmp_path)
    index = json.loads((directory / "index.json").read_text())
    rec = next(r for r in index["records"] if r["step"] == 2 and r["rank"] == 1)
    name = directory / rec["segments"][2]["g"]
    g = np.load(name)
    g[:] = 1.0  # a large, uniform gradient: every element's criterion changes
    np.save(name, g)
    assert replay.main(str(directory), None) == 1
    out = capsys.readouterr().out
    assert "first difference at step 2, rank 1, segment 2 (layer1.W)" in out


def test_replay_refuses_an_unreadable_dump(tmp_path, capsys):
    assert replay.main(str(tmp_path), None) == 2
    assert "cannot read the index" in capsys.readouterr().err
    directory = _dump(tmp_path)
    index = json.loads((directory / "index.json").read_text())
    index["version"] = 99
    (directory / "index.json").write_text(json.dumps(index))
    with pytest.raises(replay.ReplayError, match="version 99"):
        replay.replay(directory)


def test_conformance_cli_replays(tmp_path):
    directory = _dump(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "vgc_ref.conformance", "--replay", str(directory), "--backend", "numba-cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 12 messages identical" in done.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        # missing parents are created; an ancestor that takes no file (even for root) is refused
        (["--dump-inputs", "/proc/vgc-dump/dump"], "directory /proc is not writable"),
        (["--dump-inputs", "DUMP", "--method", "none"], "needs --method vgc, strom or hybrid"),
        (["--dump-inputs", "DUMP", "--dump-steps", "0"], "--dump-steps 0"),
        (["--dump-inputs", "FILE"], "is not a directory"),
    ],
)
def test_bad_dump_arguments_are_rejected_before_training(tmp_path, args, message, capsys):
    (tmp_path / "file").write_text("x")
    args = [a.replace("DUMP", str(tmp_path / "d")).replace("FILE", str(tmp_path / "file")) for a in args]
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--simulate-ranks", "2", *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


@pytest.mark.mpi
def test_mpiexec_dump_equals_the_simulated_dump(tmp_path):
    """Under mpiexec rank 0 gathers every rank's g and s: the same files as --simulate-ranks."""
    from test_mpi_demo import run_demo, run_mpi

    sim, real = tmp_path / "sim", tmp_path / "mpi"
    args = ["train", *SMALL_ARGS, "--dump-inputs"]
    done = run_demo([*args, str(sim), "--simulate-ranks", "2"])
    assert done.returncode == 0, done.stderr
    done = run_mpi(2, [*args, str(real)])
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in sim.iterdir())
    assert names == sorted(p.name for p in real.iterdir()) and len(names) == 1 + 3 * 2 * (1 + 4 * 2)
    for name in names:
        assert (sim / name).read_bytes() == (real / name).read_bytes(), name
    assert replay.replay(real).difference is None
