"""The demo at its edges: bad arguments end before any work, checkpoints are checked by content.

Each bad argument is run as a user runs it, in a subprocess: exit status 2, one line on
stderr that names the option, nothing on stdout (no training line) and no output file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpi_demo import checkpoint, cli
from mpi_demo.checkpoint import CheckpointError
from mpi_demo.config import TrainConfig
from mpi_demo.train import run_training

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(samples=600, hidden=(16,), batch=32, steps=30, checksum_every=5, progress=False)


def small(**changes) -> TrainConfig:
    return TrainConfig(**{**SMALL, **changes})


def demo(args: list[str], env: dict[str, str] | None = None, timeout: int = 120):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MPI_LOCALRANKID", "VGC_BACKEND"):
        if env is None or var not in env:
            full_env.pop(var, None)
    cmd = [sys.executable, "-m", "mpi_demo", *args]
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


def assert_usage_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, exactly one line on stderr holding every fragment, no usage block, no output."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("python -m mpi_demo"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert done.stdout == ""


BAD_TRAIN_ARGS = [
    (["--samples", "100", "--batch", "8", "--test-fraction", "0.004"], ["--test-fraction 0.004", "no test"]),
    (["--samples", "2", "--batch", "1"], ["--test-fraction 0.2", "no test"]),
    (["--alpha", "1e39"], ["--alpha 1e+39", "inf in float32"]),
    (["--alpha", "1e-50"], ["--alpha 1e-50", "0.0 in float32"]),
    (["--method", "strom", "--tau", "1e-50"], ["--tau 1e-50", "float32"]),
    (["--lr", "1e300"], ["--lr 1e+300", "inf in float32"]),
    (["--momentum", "0.99999999"], ["--momentum", "1.0 in float32"]),
    (["--method", "hybrid"], ["--tau 0.0", "--method hybrid", "--tau 0.01"]),
    (["--samples", "x"], ["argument --samples", "'x'"]),
    (["--method", "strom", "--tau", "0.01", "--residual", "reset"], ["--residual 'reset'", "strom always"]),
    (["--method", "topk", "--residual", "reset"], ["--residual 'reset'", "topk always feeds"]),
    (["--lr-schedule", "linear"], ["--lr-schedule", "'linear'"]),
]


@pytest.mark.parametrize("args,fragments", BAD_TRAIN_ARGS, ids=[" ".join(a) for a, _ in BAD_TRAIN_ARGS])
def test_bad_value_ends_with_one_line_before_training(tmp_path, args, fragments):
    trace = tmp_path / "t.jsonl"
    done = demo(["train", "--simulate-ranks", "2", "--trace", str(trace), *args])
    assert_usage_error(done, *fragments)
    assert not trace.exists()


@pytest.mark.parametrize("option", ["--trace", "--checkpoint"])
def test_output_path_that_is_a_directory_is_refused_before_training(tmp_path, option):
    done = demo(["train", "--simulate-ranks", "2", option, str(tmp_path)])
    assert_usage_error(done, f"{option} '{tmp_path}'", "is a directory")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_path_in_a_read_only_directory_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        done = demo(["train", "--simulate-ranks", "2", "--checkpoint", str(locked / "c.ckpt")])
    finally:
        locked.chmod(0o700)
    assert_usage_error(done, "--checkpoint", "is not writable")


def test_trace_and_checkpoint_on_one_path_are_refused(tmp_path):
    path = str(tmp_path / "x")
    done = demo(["train", "--simulate-ranks", "2", "--trace", path, "--checkpoint", path])
    assert_usage_error(done, "--checkpoint", "--trace")


def test_resume_from_a_directory_says_so(tmp_path):
    done = demo(["train", "--simulate-ranks", "2", "--resume", str(tmp_path)])
    assert_usage_error(done, f"--resume '{tmp_path}'", "is a directory")


def test_backend_typo_in_the_environment_names_the_variable():
    done = demo(["train", "--simulate-ranks", "2"], env={"VGC_BACKEND": "numba-cp"})
    assert_usage_error(done, "$VGC_BACKEND 'numba-cp'", "numba-cpu")


def test_backend_option_defaults_to_the_environment(monkeypatch):
    """--backend absent: $VGC_BACKEND; given: the option wins; neither: numpy."""
    parser = cli.build_parser()
    monkeypatch.setenv("VGC_BACKEND", "numba-cpu")
    assert cli.config_from_args(parser.parse_args(["train"])).backend == "numba-cpu"
    assert cli.config_from_args(parser.parse_args(["train", "--backend", "numpy"])).backend == "numpy"
    monkeypatch.delenv("VGC_BACKEND")
    assert cli.config_from_args(parser.parse_args(["train"])).backend == "numpy"


def test_only_rank_zero_of_a_launch_prints_the_error():
    """Under a launcher every rank checks the arguments; ranks other than 0 exit 2 silently."""
    other = demo(["train", "--alpha", "0"], env={"PMI_RANK": "1"})
    assert other.returncode == 2 and other.stderr == ""
    first = demo(["train", "--alpha", "0"], env={"PMI_RANK": "0"})
    assert_usage_error(first, "--alpha 0.0")


def test_a_path_error_is_also_reported_by_the_first_rank_of_another_host(tmp_path):
    """Paths may differ between hosts: rank 2, first on its host, names itself; rank 3 is silent."""
    args = ["train", "--trace", str(tmp_path)]
    first = demo(args, env={"PMI_RANK": "2", "MPI_LOCALRANKID": "0"})
    assert first.returncode == 2
    assert first.stderr.strip().splitlines() == [
        f"python -m mpi_demo train: error (rank 2): --trace '{tmp_path}': is a directory; give a file path"
    ]
    second = demo(args, env={"PMI_RANK": "3", "MPI_LOCALRANKID": "1"})
    assert second.returncode == 2 and second.stderr == ""
    value = demo(["train", "--alpha", "0"], env={"PMI_RANK": "2", "MPI_LOCALRANKID": "0"})
    assert value.returncode == 2 and value.stderr == ""  # the same on every host: rank 0 says it


@pytest.mark.mpi
def test_bad_argument_under_mpiexec_prints_one_line_once():
    from tests.test_mpi_demo import run_mpi

    done = run_mpi(4, ["train", "--method", "hybrid"], timeout=60)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--tau 0.0" in lines[0], done.stderr
    assert "usage:" not in done.stderr


def test_every_demo_command_answers_version():
    from vgc_ref import __version__

    for args in (["--version"], ["train", "--version"], ["compare", "--version"]):
        done = demo(args)
        assert done.returncode == 0 and __version__ in done.stdout, (args, done)


def test_compare_of_a_binary_file_is_unreadable_not_different(tmp_path):
    """Exit 2 ("unreadable"), never 1 ("the traces differ"), for a file that is not a trace."""
    binary = tmp_path / "b.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    listing = tmp_path / "list.jsonl"
    listing.write_text("[1, 2]\n")
    for path in (binary, listing):
        done = demo(["compare", str(path), str(path)])
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and str(path) in done.stderr


def test_compare_of_a_header_without_its_fields_is_unreadable(tmp_path):
    bad = tmp_path / "h.jsonl"
    from mpi_demo.trace import FORMAT, VERSION

    bad.write_text(f'{{"type":"header","format":"{FORMAT}","version":{VERSION}}}\n')
    assert cli.main(["compare", str(bad), str(bad)]) == 2


# --------------------------------------------------------------------------------------
# Checkpoints: validated by content, with a correct digest
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "run.ckpt"
    run_training(small(ranks=2, steps=6, checkpoint=str(path), checkpoint_every=3))
    return path


def _edit(ckpt: checkpoint.Checkpoint, what: str) -> None:
    if what == "r_one_element":
        ckpt.r[1][0] = ckpt.r[1][0][:1].copy()
    elif what == "v_negative":
        ckpt.v[0][2][3] = -1.0
    elif what == "r_nan":
        ckpt.r[0][1][0] = np.nan
    elif what == "params_nan":
        ckpt.params[0][5] = np.nan
    elif what == "momentum_inf":
        ckpt.momentum[1][0] = np.inf
    elif what == "params_float64":
        ckpt.params[0] = ckpt.params[0].astype(np.float64)
    elif what == "step_beyond_run":
        ckpt.step = 10_000
    elif what == "order_not_permutation":
        ckpt.order = np.zeros_like(ckpt.order)
    elif what == "order_short":
        ckpt.order = ckpt.order[:10]
    elif what == "counters_missing":
        del ckpt.counters["sent"]
    elif what == "counters_negative":
        ckpt.counters["sent"] = -5
    elif what == "ranks_zero":
        ckpt.ranks = 0
    else:
        raise AssertionError(what)


CONTENT_DAMAGE = {
    "r_one_element": "array r/1/0: shape [1]",
    "v_negative": "array v/0/2: element 3 is",
    "r_nan": "array r/0/1: element 0 is",
    "params_nan": "array params/0: element 5 is",
    "momentum_inf": "array momentum/1: element 0 is",
    "params_float64": "array params/0: dtype '<f8', expected '<f4'",
    "step_beyond_run": "step = 10000: this run has 6 steps",
    "order_not_permutation": "array order: must be a permutation",
    "order_short": "array order: must be a permutation",
    "counters_missing": "header field counters",
    "counters_negative": "counter sent = -5",
    "ranks_zero": "header field ranks = 0",
}


@pytest.mark.parametrize("what", list(CONTENT_DAMAGE))
def test_checkpoint_with_a_valid_digest_but_bad_content_is_refused(saved, tmp_path, what):
    """The SHA-256 is recomputed after the edit (to_bytes): only the content checks can catch it."""
    ckpt = checkpoint.load(saved)
    _edit(ckpt, what)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(checkpoint.to_bytes(ckpt))
    with pytest.raises(CheckpointError, match=CONTENT_DAMAGE[what].replace("[", r"\[").replace("]", r"\]")):
        run_training(small(ranks=2, steps=6, resume=str(bad)))


def test_bad_checkpoint_content_exits_2_with_one_line(saved, tmp_path):
    ckpt = checkpoint.load(saved)
    _edit(ckpt, "v_negative")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(checkpoint.to_bytes(ckpt))
    args = ["--samples", "600", "--hidden", "16", "--batch", "32", "--steps", "6", "--checksum-every", "5"]
    done = demo(["train", "--simulate-ranks", "2", *args, "--resume", str(bad)])
    assert done.returncode == 2, done.stderr
    assert "v must be >= 0" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_valid_checkpoint_still_resumes(saved):
    """The control of the table above: the unedited file, rewritten the same way, is accepted."""
    again = saved.parent / "again.ckpt"
    again.write_bytes(checkpoint.to_bytes(checkpoint.load(saved)))
    result = run_training(small(ranks=2, steps=6, resume=str(again)))
    assert result.steps == 6


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(saved, tmp_path):
    target = tmp_path / "run.ckpt"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(finished.stdout)
    stale = tmp_path / f".run.ckpt.tmp-{dead_pid}"
    stale.write_bytes(b"x" * 1000)
    live = tmp_path / f".run.ckpt.tmp-{os.getppid()}"  # a writer that still runs: left alone
    live.write_bytes(b"y")
    other = tmp_path / f".other.ckpt.tmp-{dead_pid}"  # another checkpoint's: left alone
    other.write_bytes(b"z")
    checkpoint.save(target, checkpoint.load(saved))
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert checkpoint.load(target).step == checkpoint.load(saved).step


SWEEP_CASES = [
    (["--studies", "foo"], "--studies 'foo'"),
    (["--jobs", "0"], "--jobs 0"),
    (["--render", "no-such-results.json"], "--render no-such-results.json"),
    (["--markdown", "no/such/dir/results.md"], "--markdown no/such/dir/results.md"),
    (["--cache", "."], "--cache ."),
]


@pytest.mark.parametrize("args,fragment", SWEEP_CASES, ids=[" ".join(a) for a, _ in SWEEP_CASES])
def test_sweep_refuses_bad_arguments_before_any_run(tmp_path, args, fragment):
    out = tmp_path / "sweep"
    done = demo(["sweep", "--quick", "--out", str(out), *args])
    assert_usage_error(done, fragment)
    assert not out.exists()


def test_sweep_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    assert_usage_error(demo(["sweep", "--quick", "--out", str(f)]), "--out", "not a directory")
