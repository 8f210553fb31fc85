"""``train`` refuses what it cannot finish before it starts, and says what it does.

Every refusal is a user's command line run in a subprocess: exit status 2, one line on
stderr naming the option, nothing on stdout (no training line) and no file written.
The tests run as root here, where ``os.access`` says yes to /proc, /sys and /dev/full:
the paths are proven writable by writing a probe file.
"""

from __future__ import annotations

import argparse
import os
import tracemalloc

import pytest

from mpi_demo import cli, trace
from mpi_demo.config import (
    FALLBACK_MEMORY_LIMIT,
    ConfigError,
    TrainConfig,
    check_memory,
    memory_estimate,
    memory_limit,
)
from mpi_demo.train import RankFailureError, run_training
from tests.test_demo_edges import assert_usage_error, demo

SMALL = ["--simulate-ranks", "2", "--samples", "600", "--hidden", "16", "--batch", "32"]


def _train_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    return next(a for a in parser._subparsers._group_actions if a.dest == "command").choices["train"]


# --------------------------------------------------------------------------------------
# --help
# --------------------------------------------------------------------------------------


def test_every_train_option_has_a_help_text():
    """Every option a user can see says what it does (the testing aids are hidden on purpose)."""
    train = _train_parser()
    shown = [a for a in train._actions if a.help != argparse.SUPPRESS]
    missing = [a.option_strings[0] for a in shown if not (a.help or "").strip()]
    assert not missing, missing
    assert {a.dest for a in train._actions if a.help == argparse.SUPPRESS} == {"fail_at_step", "fail_rank"}


def test_help_shows_each_default_once_and_names_both_models():
    """One "default" per option (an option with a default shows it), never "(default: None)"."""
    train = _train_parser()
    formatter = cli._HelpFormatter("train")
    for action in train._actions:
        if action.help == argparse.SUPPRESS or action.dest in ("help", "version"):
            continue
        text = formatter._get_help_string(action) % {**vars(action), "default": action.default}
        shows = (action.default is not None and action.default is not False) or "default" in (
            action.help or ""
        )
        assert text.count("default") == (1 if shows else 0), (action.option_strings, text)
    flat = " ".join(train.format_help().split())
    assert "(default: None)" not in flat and "MLP or 1-D CNN" in flat
    assert "(default: 128,64)" in flat and "(default: $VGC_BACKEND, else numpy)" in flat


# --------------------------------------------------------------------------------------
# --dump-inputs
# --------------------------------------------------------------------------------------


def test_dump_inputs_ends_the_run_after_the_dumped_steps(tmp_path):
    """With --dump-inputs the run is the run of --steps N: the same trace bytes, then it ends."""
    dumped, plain = tmp_path / "dumped.jsonl", tmp_path / "plain.jsonl"
    done = demo(
        [
            "train",
            *SMALL,
            "--dump-inputs",
            str(tmp_path / "d" / "e"),
            "--dump-steps",
            "2",
            "--trace",
            str(dumped),
        ]
    )
    assert done.returncode == 0, done.stderr
    assert "2 steps" in done.stdout
    demo(["train", *SMALL, "--steps", "2", "--trace", str(plain)])
    assert dumped.read_bytes() == plain.read_bytes()
    assert sum(r["type"] == "step" for r in trace.read_trace(dumped)) == 2
    assert (tmp_path / "d" / "e" / "index.json").exists()  # missing parents are created


def test_dump_steps_beyond_steps_end_at_steps(tmp_path):
    result = run_training(
        TrainConfig(
            samples=600,
            hidden=(16,),
            batch=32,
            steps=2,
            ranks=2,
            progress=False,
            dump_inputs=str(tmp_path / "d"),
            dump_steps=5,
        )
    )
    assert result.steps == 2


# --------------------------------------------------------------------------------------
# Output paths: proven writable by writing, never two outputs on one file
# --------------------------------------------------------------------------------------

UNWRITABLE_FILES = [
    ("/proc/vgc-trace", "directory /proc is not writable"),
    ("/proc/self/vgc-trace", "is not writable"),
    ("/sys/vgc-trace", "directory /sys is not writable"),
    ("/dev/full", "exists and is not a regular file"),
    ("", "is empty"),
    ("/no/such/dir/t.jsonl", "does not exist"),
]
UNWRITABLE_DIRS = [
    ("/proc", "directory /proc is not writable"),
    ("/proc/vgc-dump/deeper", "directory /proc is not writable"),
    ("/sys/kernel/vgc-dump", "directory /sys/kernel is not writable"),
    ("/dev/full", "exists and is not a directory"),
    ("", "is empty"),
]
CASES = [(o, p, m) for o in ("--trace", "--checkpoint") for p, m in UNWRITABLE_FILES]
CASES += [("--dump-inputs", p, m) for p, m in UNWRITABLE_DIRS]


@pytest.mark.parametrize("option,path,message", CASES, ids=[f"{o} {p!r}" for o, p, _ in CASES])
def test_an_output_that_cannot_be_written_is_refused_up_front(option, path, message):
    if path.startswith("/sys") and not os.path.isdir("/sys/kernel"):
        pytest.skip("no /sys here")
    done = demo(["train", *SMALL, option, path])
    assert_usage_error(done, f"{option} {path!r}", message)


def _pair(tmp_path, kind):
    same = str(tmp_path / "x")
    existing = tmp_path / "dump"
    existing.mkdir()
    return {
        "trace=checkpoint": (
            ["--trace", same, "--checkpoint", same],
            "--checkpoint",
            "is the --trace path too",
        ),
        "trace=dump": (["--dump-inputs", same, "--trace", same], "--dump-inputs", "is the --trace path too"),
        "checkpoint=dump": (
            ["--checkpoint", same, "--dump-inputs", same],
            "--dump-inputs",
            "is the --checkpoint",
        ),
        "trace via ..": (
            ["--trace", same, "--checkpoint", str(tmp_path / "dump" / ".." / "x")],
            "--checkpoint",
            "is the --trace path too",
        ),
        "trace=dump index": (
            ["--dump-inputs", str(existing), "--trace", str(existing / "index.json")],
            "--trace",
            "is a file that --dump-inputs writes",
        ),
        "checkpoint=dump message": (
            ["--dump-inputs", str(existing), "--checkpoint", str(existing / "t00001_r000.msg")],
            "--checkpoint",
            "is a file that --dump-inputs writes",
        ),
    }[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "trace=checkpoint",
        "trace=dump",
        "checkpoint=dump",
        "trace via ..",
        "trace=dump index",
        "checkpoint=dump message",
    ],
)
def test_two_outputs_on_one_path_are_refused_up_front(tmp_path, kind):
    args, option, message = _pair(tmp_path, kind)
    done = demo(["train", *SMALL, *args])
    assert_usage_error(done, option, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump"]  # nothing written


def test_trace_over_the_checkpoint_it_resumes_is_refused(tmp_path):
    ckpt = tmp_path / "c.ckpt"
    run_training(
        TrainConfig(
            samples=600,
            hidden=(16,),
            batch=32,
            steps=2,
            ranks=2,
            progress=False,
            checkpoint=str(ckpt),
            checkpoint_every=2,
        )
    )
    before = ckpt.read_bytes()
    done = demo(["train", *SMALL, "--steps", "2", "--resume", str(ckpt), "--trace", str(ckpt)])
    assert_usage_error(done, "--trace", "is the --resume checkpoint")
    assert ckpt.read_bytes() == before


def test_resume_and_checkpoint_may_name_one_file(tmp_path):
    """Continuing a run into the checkpoint it came from is the usual case: allowed."""
    ckpt = tmp_path / "c.ckpt"
    base = dict(samples=600, hidden=(16,), batch=32, steps=4, ranks=2, progress=False)
    with pytest.raises(RankFailureError):
        run_training(TrainConfig(**base, checkpoint=str(ckpt), checkpoint_every=2, fail_at_step=2))
    done = demo(["train", *SMALL, "--steps", "4", "--resume", str(ckpt), "--checkpoint", str(ckpt)])
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_resume_from_a_device_is_refused(path):
    done = demo(["train", *SMALL, "--resume", path])
    assert_usage_error(done, f"--resume {path!r}", "not a regular file")


# --------------------------------------------------------------------------------------
# Memory: estimated from the configuration, refused before allocating
# --------------------------------------------------------------------------------------

TOO_BIG = [
    (["--model", "cnn", "--dataset", "mnist1d", "--channels", "100000,100000,100000"], "--channels"),
    (["--hidden", "100000,100000"], "--hidden"),
    (["--hidden", "200000000"], "--hidden"),
    (["--samples", "1000000000", "--batch", "32"], "--samples"),
    (["--features", "100000000", "--samples", "100"], "--features"),
]


@pytest.mark.parametrize("args,option", TOO_BIG, ids=[" ".join(a) for a, _ in TOO_BIG])
def test_a_run_larger_than_the_memory_is_refused_before_allocating(args, option):
    done = demo(["train", "--simulate-ranks", "2", *args], timeout=60)
    assert_usage_error(done, option, "the run needs about", "GiB of memory", "available")


def test_the_memory_refusal_names_the_estimate_and_the_limit():
    config = TrainConfig(hidden=(2000, 2000), samples=600, ranks=4)
    total = sum(memory_estimate(config, 4, 4).values())
    check_memory(config, 4, 4, limit=(total, "a test limit"))  # exactly enough: accepted
    with pytest.raises(
        ConfigError, match=r"--hidden '2000,2000': the run needs about .* available \(a test limit\)"
    ):
        check_memory(config, 4, 4, limit=(total - 1, "a test limit"))


def test_the_estimate_is_not_below_the_measured_peak():
    """Python-side allocations of a real run (tracemalloc) against the estimate."""
    config = TrainConfig(hidden=(1000, 500), samples=2000, steps=2, ranks=2, progress=False)
    estimate = sum(memory_estimate(config, 2, 2).values())
    tracemalloc.start()
    try:
        run_training(config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= estimate <= 4 * peak, (peak, estimate)


def test_memory_limit_reads_mem_available_and_shares_it_between_local_ranks(tmp_path, monkeypatch):
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    for var in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert memory_limit(str(info)) == (8000000 * 1024, "MemAvailable in /proc/meminfo")
    monkeypatch.setenv("MPI_LOCALNRANKS", "4")
    limit, source = memory_limit(str(info))
    assert limit == 2000000 * 1024 and "shared by 4 ranks" in source
    monkeypatch.delenv("MPI_LOCALNRANKS")
    assert memory_limit(str(tmp_path / "absent"))[0] == FALLBACK_MEMORY_LIMIT
    info.write_text("MemTotal:       16000000 kB\n")
    assert memory_limit(str(info))[0] == FALLBACK_MEMORY_LIMIT


def test_the_default_runs_fit_the_estimate_of_this_machine():
    """The README's job and the CNN's pass the check here (a false refusal would stop them)."""
    for config in (TrainConfig(ranks=4), TrainConfig(ranks=4, dataset="mnist1d-10k", model="cnn")):
        check_memory(config, 4, 4)
