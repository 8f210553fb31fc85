"""The MPI demo: model gradients, trace oracle, checkpoints, faults, argument checks.

Most tests run the workers simulated in this process (``--simulate-ranks P``); only the
tests of MPI itself start ``mpiexec``, each under a timeout. Traces are compared byte for
byte: the demo promises bit-identical traces, not close ones.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from numeric import central_differences

from mpi_demo import checkpoint, cli, comm, model, trace
from mpi_demo.checkpoint import CheckpointError
from mpi_demo.config import ConfigError, TrainConfig
from mpi_demo.train import RankFailureError, run_training
from vgc_ref import dense_grad_var, per_sample_dense_grad_var
from vgc_ref.backends import REGISTRY, backend_names, get_backend

ROOT = Path(__file__).resolve().parents[1]
MPI_TIMEOUT = 120  # seconds, per mpiexec run

#: A small job: 2 layers, 30 steps, so a run takes well under a second.
SMALL = dict(samples=600, hidden=(16,), batch=32, steps=30, checksum_every=5, progress=False)
SMALL_ARGS = ["--samples", "600", "--hidden", "16", "--batch", "32", "--steps", "30", "--checksum-every", "5"]


def small(**changes) -> TrainConfig:
    return TrainConfig(**{**SMALL, **changes})


def mpi_env() -> dict[str, str]:
    """The demo's mpiexec environment, with this checkout first on the path."""
    env = comm.mpi_env()
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def mpiexec() -> str:
    """The mpiexec beside this Python (the mpich wheel's), else the one on PATH; skip if none."""
    pytest.importorskip("mpi4py")
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec found")
    return found


def run_mpi(n: int, args: list[str], timeout: int = MPI_TIMEOUT) -> subprocess.CompletedProcess:
    cmd = [mpiexec(), "-n", str(n), sys.executable, "-m", "mpi4py", "-m", "mpi_demo", *args]
    return subprocess.run(cmd, cwd=ROOT, env=mpi_env(), capture_output=True, text=True, timeout=timeout)


def run_demo(args: list[str], timeout: int = MPI_TIMEOUT) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mpi_demo", *args]
    return subprocess.run(cmd, cwd=ROOT, env=mpi_env(), capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


def _mean_loss(params, sizes, x, y, ops) -> float:
    _, logits = model.forward(params, sizes, x, ops)
    loss, _ = model.softmax_xent(logits, y, ops)
    return float(loss.mean())


def test_backward_matches_finite_differences():
    """g of every segment equals the central difference of the mean loss (float64, 3 layers).

    In float64 through the dtype-generic ``--products blas`` namespace (the ordered
    primitives are float32 only); ``tests/test_demo_portable.py`` checks the ordered float32
    gradients against this float64 computation.
    """
    ops = model.products("blas")
    rng = np.random.default_rng(1)
    sizes = (5, 7, 6, 4)
    params = [p.astype(np.float64) for p in model.init_params(sizes, 3)]
    for p in params[1::2]:
        p[...] = rng.normal(0, 0.1, p.shape)  # nonzero biases
    x = rng.normal(size=(9, 5))
    y = rng.integers(0, 4, 9)
    xs, logits = model.forward(params, sizes, x, ops)
    _, probs = model.softmax_xent(logits, y, ops)
    deltas = model.backward(params, sizes, xs, probs, y, ops)
    grads = model.weight_grads(xs, deltas, ops)
    numeric = central_differences(params, lambda: _mean_loss(params, sizes, x, y, ops))
    for j, (g, n) in enumerate(zip(grads, numeric)):
        np.testing.assert_allclose(g, n, rtol=1e-5, atol=1e-8, err_msg=f"segment {j}")


def test_model_g_and_s_are_dense_grad_var_bit_for_bit():
    """The model's g and s are vgc_ref.dense_grad_var's bits, and match the per-sample computation."""
    sizes = (12, 10, 5)
    params = model.init_params(sizes, 0)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(11, 12)).astype(np.float32)
    y = rng.integers(0, 5, 11)
    xs, logits = model.forward(params, sizes, x)
    _, probs = model.softmax_xent(logits, y)
    deltas = model.backward(params, sizes, xs, probs, y)
    grads, terms = model.weight_grads(xs, deltas), model.variance_terms(xs, deltas)
    assert all(a.dtype == np.float32 for a in grads + terms)
    for layer, (xl, dl) in enumerate(zip(xs, deltas)):
        g_w, s_w, g_b, s_b = dense_grad_var(xl, dl)
        for ours, ref in (
            (grads[2 * layer], g_w),
            (terms[2 * layer], s_w),
            (grads[2 * layer + 1], g_b),
            (terms[2 * layer + 1], s_b),
        ):
            assert ours.tobytes() == ref.ravel().tobytes()
        slow = per_sample_dense_grad_var(xl, dl)
        for ours, ref in zip(
            (grads[2 * layer], terms[2 * layer], grads[2 * layer + 1], terms[2 * layer + 1]), slow
        ):
            np.testing.assert_allclose(ours, ref.ravel(), rtol=2e-5, atol=1e-9)


def test_momentum_sgd_update_order():
    """d = g + wd*w (weights only); m = mu*m + d; w = w - lr*m, each op rounded to float32."""
    f = np.float32
    w, b = np.array([1.0, -2.0], f), np.array([0.5], f)
    m_w, m_b = np.array([0.25, 0.0], f), np.array([1.0], f)
    g_w, g_b = np.array([0.1, 0.2], f), np.array([-0.3], f)
    lr, mu, wd = f(0.05), f(0.9), f(1e-2)
    expect_mw = mu * m_w + (g_w + wd * w)
    expect_w = w - lr * expect_mw
    expect_mb = mu * m_b + g_b
    expect_b = b - lr * expect_mb
    model.momentum_sgd([w, b], [m_w, m_b], [g_w, g_b], [True, False], lr, mu, wd)
    for got, want in ((w, expect_w), (m_w, expect_mw), (b, expect_b), (m_b, expect_mb)):
        assert got.tobytes() == want.tobytes()


# --------------------------------------------------------------------------------------
# Traces: determinism, the simulation oracle, backends, compare
# --------------------------------------------------------------------------------------


def traced(tmp_path: Path, name: str, **changes) -> Path:
    path = tmp_path / f"{name}.jsonl"
    run_training(small(trace=str(path), **changes))
    return path


def test_same_seed_gives_identical_traces(tmp_path):
    """Two runs of one configuration write the same bytes; another seed does not."""
    a = traced(tmp_path, "a", ranks=2)
    b = traced(tmp_path, "b", ranks=2)
    c = traced(tmp_path, "c", ranks=2, seed=1)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_trace_records_are_consistent(tmp_path):
    """Header, one step record per step with P ranks, params every N steps, final parameters."""
    path = traced(tmp_path, "t", ranks=3)
    records = trace.read_trace(path)
    head = records[0]
    assert head["ranks"] == 3 and head["steps"] == 30
    steps = [r for r in records if r["type"] == "step"]
    assert [r["step"] for r in steps] == list(range(30))
    assert all(len(r["ranks"]) == 3 for r in steps)
    assert [r["step"] for r in records if r["type"] == "params"] == list(range(4, 30, 5))
    final = records[-1]
    assert final["type"] == "final"
    params = trace.final_params(final)
    assert [p.size for p in params] == [s["n"] for s in head["segments"]]
    assert [trace.sha256(p) for p in params] == final["sha256"]


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_simulated_ranks_trace_equals_mpiexec(tmp_path, ranks):
    """--simulate-ranks P and mpiexec -n P with the same arguments write the same trace bytes."""
    sim, real = tmp_path / "sim.jsonl", tmp_path / "mpi.jsonl"
    done = run_demo(["train", *SMALL_ARGS, "--simulate-ranks", str(ranks), "--trace", str(sim)])
    assert done.returncode == 0, done.stderr
    done = run_mpi(ranks, ["train", *SMALL_ARGS, "--trace", str(real)])
    assert done.returncode == 0, done.stderr
    assert sim.read_bytes() == real.read_bytes(), cli_compare(sim, real)


def cli_compare(a: Path, b: Path) -> str:
    return trace.compare_files(a, b)[1]


@pytest.mark.parametrize("method,tau", [("vgc", 0.0), ("strom", 0.01), ("hybrid", 0.01)])
@pytest.mark.parametrize("backend", [b for b in backend_names() if b != "numpy"])
def test_backends_give_identical_traces(tmp_path, backend, method, tau):
    """Every registered backend gives the NumPy reference's trace, byte for byte."""
    try:
        get_backend(backend)
    except Exception as err:  # e.g. no GPU for a CUDA backend
        pytest.skip(f"backend {backend} cannot run here: {err}")
    job = dict(ranks=3, method=method, tau=tau)
    if getattr(importlib.import_module(REGISTRY[backend]), "SIMULATOR", False):
        # A simulated GPU runs a kernel thread by thread: one method on a tiny job only.
        if method != "vgc":
            pytest.skip(f"{backend} runs on a simulator here: only vgc, on a tiny job")
        job.update(samples=200, features=6, classes=3, hidden=(5,), batch=6, steps=3, ranks=2)
    ref = traced(tmp_path, "numpy", **job)
    other = traced(tmp_path, backend, backend=backend, **job)
    assert ref.read_bytes() == other.read_bytes(), cli_compare(ref, other)


def test_compare_says_identical(tmp_path, capsys):
    a = traced(tmp_path, "a", ranks=2)
    b = traced(tmp_path, "b", ranks=2)
    assert cli.main(["compare", str(a), str(b)]) == 0
    assert capsys.readouterr().out.startswith("identical: 30 steps, 2 ranks")


def test_compare_names_first_step_rank_and_segment(tmp_path, capsys):
    """A different alpha shows up at step 0, rank 0, segment 0, and the config line names alpha."""
    a = traced(tmp_path, "a", ranks=2)
    b = traced(tmp_path, "b", ranks=2, alpha=4.0)
    assert cli.main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "first difference at step 0, rank 0, segment 0 (layer0.W)" in out
    assert "alpha = 2.0 vs 4.0" in out


def test_compare_finds_a_later_difference_on_rank_1(tmp_path):
    """Two traces that agree up to step 7 and differ in one segment of rank 1 there."""
    a = traced(tmp_path, "a", ranks=2)
    lines = a.read_text().splitlines(keepends=True)
    records = trace.read_trace(a)
    k = next(i for i, r in enumerate(records) if r.get("type") == "step" and r["step"] == 7)
    rec = records[k]
    rec["ranks"][1]["segments"][2] = "0" * 64
    rec["ranks"][1]["sha256"] = "1" * 64
    lines[k] = trace.dumps(rec)
    b = tmp_path / "b.jsonl"
    b.write_text("".join(lines))
    same, report = trace.compare_files(a, b)
    assert not same
    assert "step 7, rank 1, segment 2 (layer1.W)" in report


def test_compare_rejects_a_file_that_is_not_a_trace(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type":"header","format":"other","version":1}\n')
    assert cli.main(["compare", str(bad), str(bad)]) == 2
    assert "format 'other'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_after_a_failure_equals_the_uninterrupted_run(tmp_path, schedule):
    """Checkpoint every 4 steps, fail at step 9, resume from step 8: the trace is the same bytes
    (with the cosine schedule too: the learning rate follows the step count, not the process)."""
    full = traced(tmp_path, "full", ranks=3, lr_schedule=schedule)
    ckpt = tmp_path / "run.ckpt"
    broken = tmp_path / "broken.jsonl"
    with pytest.raises(RankFailureError) as info:
        run_training(
            small(
                ranks=3,
                trace=str(broken),
                checkpoint=str(ckpt),
                checkpoint_every=4,
                fail_at_step=9,
                fail_rank=2,
                lr_schedule=schedule,
            )
        )
    assert info.value.rank == 2
    assert checkpoint.load(ckpt).step == 8
    resumed = tmp_path / "resumed.jsonl"
    run_training(small(ranks=3, trace=str(resumed), resume=str(ckpt), lr_schedule=schedule))
    assert resumed.read_bytes() == full.read_bytes(), cli_compare(full, resumed)
    if schedule != "constant":  # the schedule is part of the job: another one is refused
        with pytest.raises(CheckpointError, match="lr_schedule"):
            run_training(small(ranks=3, resume=str(ckpt)))


@pytest.mark.mpi
def test_mpiexec_resumes_a_simulated_checkpoint(tmp_path):
    """A checkpoint holds every rank's state: an MPI job continues a simulated one bit for bit."""
    full = traced(tmp_path, "full", ranks=2)
    ckpt = tmp_path / "run.ckpt"
    run_training(small(ranks=2, steps=30, checkpoint=str(ckpt), checkpoint_every=10))
    resumed = tmp_path / "resumed.jsonl"
    done = run_mpi(2, ["train", *SMALL_ARGS, "--resume", str(ckpt), "--trace", str(resumed)])
    assert done.returncode == 0, done.stderr
    assert resumed.read_bytes() == full.read_bytes(), cli_compare(full, resumed)


@pytest.fixture
def saved(tmp_path) -> Path:
    path = tmp_path / "run.ckpt"
    run_training(small(ranks=2, steps=6, checkpoint=str(path), checkpoint_every=3))
    return path


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda b: b[: len(b) // 2], "SHA-256 mismatch"),
        (lambda b: b[:20], "truncated"),
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "SHA-256 mismatch"),
        (lambda b: b"NOTACKPT" + b[8:], "magic"),
        (lambda b: b[:8] + (2).to_bytes(4, "little") + b[12:], "format version 2"),
    ],
    ids=["half", "tiny", "bitflip", "magic", "version"],
)
def test_damaged_checkpoint_is_refused(saved, tmp_path, damage, message):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(damage(saved.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        run_training(small(ranks=2, resume=str(bad)))


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(ranks=3), "written by a job of 2 ranks; this job has 3"),
        (dict(hidden=(8,)), "segment sizes"),
        (dict(alpha=3.0), "alpha = 2.0; this run has 3.0"),
    ],
    ids=["ranks", "model", "config"],
)
def test_checkpoint_of_another_job_is_refused(saved, changes, message):
    with pytest.raises(CheckpointError, match=message):
        run_training(small(**{"ranks": 2, "steps": 6, **changes, "resume": str(saved)}))


def test_failed_write_keeps_the_previous_checkpoint(saved, monkeypatch):
    """A write that fails (here: fsync raises) leaves the old file intact and no temporary file."""
    before = saved.read_bytes()
    ckpt = checkpoint.load(saved)
    ckpt.step = 999

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        checkpoint.save(saved, ckpt)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == [saved.name]


def test_checkpoint_round_trip_is_exact(saved):
    ckpt = checkpoint.load(saved)
    again = checkpoint.from_bytes(checkpoint.to_bytes(ckpt))
    assert checkpoint.to_bytes(again) == saved.read_bytes()
    assert again.step == 6 and again.ranks == 2
    assert len(again.r) == 2 and all(r.dtype == np.float32 for r in again.r[1])


# --------------------------------------------------------------------------------------
# Faults and arguments
# --------------------------------------------------------------------------------------


@pytest.mark.mpi
def test_fault_on_one_rank_aborts_the_job_promptly():
    """An exception on rank 1 ends all 3 ranks with a nonzero status, the rank and error on stderr."""
    start = time.monotonic()
    done = run_mpi(3, ["train", *SMALL_ARGS, "--fail-at-step", "3", "--fail-rank", "1"], timeout=60)
    elapsed = time.monotonic() - start
    assert done.returncode != 0
    assert "rank 1: InjectedFaultError: injected fault at step 3" in done.stderr
    assert elapsed < 30


def test_simulated_fault_names_the_rank():
    done = run_demo(
        ["train", *SMALL_ARGS, "--simulate-ranks", "3", "--fail-at-step", "2", "--fail-rank", "2"]
    )
    assert done.returncode == 1
    assert "rank 2: InjectedFaultError" in done.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--alpha", "-1"], "--alpha -1.0"),
        (["--zeta", "1.5"], "--zeta 1.5"),
        (["--method", "strom"], "--tau 0.0: must be > 0 for --method strom"),
        (["--method", "vgc", "--tau", "0.5"], "--tau 0.5"),
        (["--batch", "2", "--simulate-ranks", "3"], "--batch 2: must be >= the number of ranks (3)"),
        (["--backend", "nope"], "--backend 'nope'"),
        (["--hidden", "16,x"], "--hidden"),
        (["--resume", "/nonexistent/ckpt"], "--resume '/nonexistent/ckpt': no such file"),
        (["--trace", "/nonexistent/dir/t.jsonl"], "does not exist"),
        (["--checkpoint-every", "5"], "needs --checkpoint PATH"),
        (["--method", "none", "--compare", "none"], "--compare 'none'"),
    ],
)
def test_bad_arguments_are_rejected_before_mpi_starts(args, message, capsys):
    """Exit status 2 and a message naming the option; mpi4py.MPI is never imported."""
    had_mpi = "mpi4py.MPI" in sys.modules
    with pytest.raises(SystemExit) as info:
        cli.main(["train", *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert had_mpi or "mpi4py.MPI" not in sys.modules


@pytest.mark.mpi
def test_bad_argument_under_mpiexec_exits_at_once():
    start = time.monotonic()
    done = run_mpi(2, ["train", "--alpha", "0"], timeout=60)
    assert done.returncode != 0
    assert "--alpha 0.0" in done.stderr
    assert time.monotonic() - start < 30


def test_validate_rejects_fail_rank_beyond_ranks():
    with pytest.raises(ConfigError, match="--fail-rank 3"):
        run_training(small(ranks=3, fail_at_step=1, fail_rank=3))


# --------------------------------------------------------------------------------------
# Data sets and the in-process API
# --------------------------------------------------------------------------------------


def test_synthetic_task_is_seeded_and_not_linearly_trivial():
    from mpi_demo.data import load_dataset

    a, b = load_dataset("synthetic", 0), load_dataset("synthetic", 0)
    assert a.x_train.tobytes() == b.x_train.tobytes() and np.array_equal(a.y_test, b.y_test)
    assert a.x_train.dtype == np.float32 and a.x_train.shape == (4800, 32)
    # a least-squares linear classifier stays far from perfect
    xa = np.hstack([a.x_train, np.ones((a.x_train.shape[0], 1), np.float32)])
    w, *_ = np.linalg.lstsq(xa, np.eye(8)[a.y_train], rcond=None)
    xt = np.hstack([a.x_test, np.ones((a.x_test.shape[0], 1), np.float32)])
    assert (np.argmax(xt @ w, axis=1) == a.y_test).mean() < 0.75


def test_digits_dataset(tmp_path):
    pytest.importorskip("sklearn")
    result = run_training(small(dataset="digits", ranks=2, steps=20, hidden=(32,)))
    assert result.test_accuracy > 0.5


def test_digits_without_scikit_learn_has_a_clear_message(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a)
    )
    with pytest.raises(SystemExit):
        cli.main(["train", "--dataset", "digits", "--simulate-ranks", "1"])
    assert "needs scikit-learn" in capsys.readouterr().err


def test_run_training_returns_a_result_for_sweeps():
    """The in-process API: accuracy, compression ratio (section 10), fraction sent, timings."""
    r = run_training(small(ranks=2))
    assert 0 <= r.test_accuracy <= 1
    assert r.compression_ratio > 1 and 0 < r.sent_fraction < 1
    assert set(r.time_per_step) == {"compute", "variance", "compress", "communicate"}
    dense = run_training(small(ranks=2, method="none"))
    assert dense.sent_fraction == 1.0
    assert dense.bytes_per_step > 4 * sum(p.size for p in dense.params)
    assert dense.compression_ratio == pytest.approx(dense.dense_bytes / dense.bytes_per_step)


def test_cli_summary_compares_with_the_baseline(capsys):
    code = cli.main(["train", *SMALL_ARGS, "--simulate-ranks", "2", "--compare", "none", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "vgc (alpha=2, zeta=0.999)" in out and "none (dense float32)" in out
    assert "vgc vs none: test accuracy" in out


def test_baseline_run_uses_the_same_seed():
    base = cli.baseline_of(small(ranks=2, trace="x", checkpoint="y", checkpoint_every=3))
    assert base.method == "none" and base.seed == 0 and base.trace is None and base.checkpoint is None
    assert dataclasses.replace(base, method="vgc", trace="x") != base
