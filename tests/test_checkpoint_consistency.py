"""A checkpoint must agree with itself: every internally inconsistent edit is refused on resume.

Each edit below leaves a file that passes every check of its bytes and content (the
SHA-256 is recomputed by ``to_bytes``; shapes, dtypes and finiteness are kept), so only
the cross-checks of :func:`mpi_demo.checkpoint.check_consistent` can catch it: the
parameters against the trace's digest or eval record, the compressor state against the
last step's sent counts, the step against the trace and the epoch order, the counters
against the trace's per-step bytes, counts and losses. Before them, such files resumed
silently and printed wrong ratios or trained from a state no run reaches.

Tiny runs: 2 simulated ranks, an MLP 32-16-16-8 (layer0.b and layer1.b have one shape),
480 training samples in steps of 32 (15 steps per epoch).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mpi_demo import checkpoint
from mpi_demo.checkpoint import CheckpointError
from mpi_demo.config import TrainConfig
from mpi_demo.train import RankFailureError, run_training
from tests.test_demo_edges import assert_usage_error, demo

BASE = dict(samples=600, hidden=(16, 16), batch=32, progress=False, ranks=2)
#: Saved mid-epoch after step 10 of 12, where the trace has a params record (every 5).
MID = dict(BASE, steps=12, checksum_every=5)
#: Saved at the end of epoch 0 (step 15 of 20), where it has an eval but no params record.
EPOCH_END = dict(BASE, steps=20, checksum_every=4)
#: The step after which each run is saved.
AT = {"epoch_end": 15}
RUNS = {
    "mid": MID,
    "epoch_end": EPOCH_END,
    "reset": dict(MID, residual="reset"),
    "strom": dict(MID, method="strom", tau=0.01),
    "none": dict(MID, method="none"),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """One checkpoint per run, written after its last step."""
    out = {}
    for name, run in RUNS.items():
        path = tmp_path_factory.mktemp(name) / "run.ckpt"
        at = AT.get(name, 10)
        with pytest.raises(RankFailureError):  # the run ends there: its checkpoint stays
            run_training(TrainConfig(**run, checkpoint=str(path), checkpoint_every=at, fail_at_step=at))
        assert checkpoint.load(path).step == at
        out[name] = path
    return out


def _trace(ckpt: checkpoint.Checkpoint) -> list[dict]:
    return [json.loads(line) for line in ckpt.trace_lines]


def _set_trace(ckpt: checkpoint.Checkpoint, records: list[dict]) -> None:
    from mpi_demo.trace import dumps

    ckpt.trace_lines = [ckpt.trace_lines[0]] + [dumps(r) for r in records[1:]]


def _drop_step_record(ckpt, t):
    records = _trace(ckpt)
    _set_trace(ckpt, [r for r in records if not (r["type"] == "step" and r["step"] == t)])


def _drop_params_record(ckpt, t):
    records = _trace(ckpt)
    _set_trace(ckpt, [r for r in records if not (r["type"] == "params" and r["step"] == t)])


def _rewind(ckpt, steps):
    """The step counter and counters.steps edited together; the trace still says 10 steps."""
    ckpt.step = steps
    ckpt.counters["steps"] = steps


def _swap(arrays, a, b):
    arrays[a], arrays[b] = arrays[b], arrays[a]


def _edit_loss(ckpt):
    records = _trace(ckpt)
    last = [r for r in records if r["type"] == "step"][-1]
    last["loss"] = last["loss"] * 0.5
    _set_trace(ckpt, records)


# name -> (run, edit, fragment of the one-line refusal)
DAMAGE = {
    # equal-shape arrays swapped between layers or ranks
    "params_swapped_between_layers": (
        "mid",
        lambda c: _swap(c.params, 1, 3),
        "array params/1: SHA-256 differs",
    ),
    "params_swapped_at_epoch_end": (
        "epoch_end",
        lambda c: _swap(c.params, 1, 3),
        "arrays params: test accuracy",
    ),
    "v_swapped_between_ranks": ("mid", lambda c: _swap(c.v, 0, 1), "array v/0/0: "),
    "state_swapped_between_ranks": (
        "mid",
        lambda c: (_swap(c.v, 0, 1), _swap(c.r, 0, 1)),
        "array v/0/0: ",
    ),
    "v_swapped_between_layers": ("mid", lambda c: _swap(c.v[0], 1, 3), "array v/0/3: "),
    "reset_r_swapped_between_ranks": ("reset", lambda c: _swap(c.r, 0, 1), "array r/0/0"),
    "params_swapped_with_momentum": (
        "mid",
        lambda c: setattr(c, "params", [m.copy() for m in c.momentum]),
        "array params/0: SHA-256 differs",
    ),
    "strom_v_nonzero": ("strom", lambda c: c.v[1][2].__setitem__(0, 1.0), "array v/1/2: must be 0"),
    "none_r_nonzero": ("none", lambda c: c.r[0][0].__setitem__(3, 0.5), "array r/0/0: must be 0"),
    # the step counter edited
    "step_edited": ("mid", lambda c: setattr(c, "step", 5), "step = 5, but its trace holds 10 step records"),
    "step_and_counter_edited": (
        "mid",
        lambda c: _rewind(c, 7),
        "step = 7, but its trace holds 10 step records",
    ),
    "epoch_edited": ("mid", lambda c: setattr(c, "epoch", 1), "header field epoch = 1"),
    "order_of_another_epoch": (
        "mid",
        lambda c: setattr(c, "order", c.order[::-1].copy()),
        "array order: not the sample order of epoch 0",
    ),
    # trace lines dropped or edited
    "step_record_dropped": ("mid", lambda c: _drop_step_record(c, 3), "trace holds 9 step records"),
    "params_record_dropped": (
        "mid",
        lambda c: _drop_params_record(c, 4),
        "a run after 10 steps has the params",
    ),
    "header_dropped": (
        "mid",
        lambda c: setattr(c, "trace_lines", c.trace_lines[1:]),
        "trace line 1 is not the trace header",
    ),
    "step_loss_edited": ("mid", _edit_loss, "counter last_loss"),
    # counters edited so that a printed figure is wrong
    "message_bytes_edited": (
        "mid",
        lambda c: c.counters.__setitem__("message_bytes", 1000),
        "counter message_bytes",
    ),
    "dense_bytes_edited": (
        "mid",
        lambda c: c.counters.__setitem__("dense_bytes", 10**9),
        "counter dense_bytes",
    ),
    "sent_edited": ("mid", lambda c: c.counters.__setitem__("sent", c.counters["sent"] + 1), "counter sent"),
    "elements_edited": ("mid", lambda c: c.counters.__setitem__("elements", 1), "counter elements"),
    "last_loss_edited": ("mid", lambda c: c.counters.__setitem__("last_loss", 0.25), "counter last_loss"),
    "epoch_seen_edited": ("mid", lambda c: c.counters.__setitem__("epoch_seen", 64), "counter epoch_seen"),
    "epoch_loss_edited": (
        "mid",
        lambda c: c.counters.__setitem__("epoch_loss", c.counters["epoch_loss"] * 1.001),
        "counter epoch_loss",
    ),
    "epoch_correct_beyond_seen": (
        "mid",
        lambda c: c.counters.__setitem__("epoch_correct", c.counters["epoch_seen"] + 1),
        "more than epoch_seen",
    ),
    "epoch_correct_at_epoch_end": (
        "epoch_end",
        lambda c: c.counters.__setitem__("epoch_correct", c.counters["epoch_correct"] - 1),
        "counter epoch_correct",
    ),
}


def _damaged(saved, tmp_path, what) -> tuple[dict, Path]:
    run, edit, _ = DAMAGE[what]
    ckpt = checkpoint.load(saved[run])
    edit(ckpt)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(checkpoint.to_bytes(ckpt))
    checkpoint.load(bad)  # the bytes and the content alone are fine
    return RUNS[run], bad


@pytest.mark.parametrize("what", list(DAMAGE))
def test_an_inconsistent_checkpoint_is_refused_naming_what_disagrees(saved, tmp_path, what):
    run, bad = _damaged(saved, tmp_path, what)
    with pytest.raises(CheckpointError, match=re.escape(DAMAGE[what][2])):
        run_training(TrainConfig(**run, resume=str(bad)))


@pytest.mark.parametrize("run", list(RUNS))
def test_the_unedited_checkpoints_resume(saved, tmp_path, run):
    """The control: each file, rewritten the same way, passes every cross-check."""
    again = tmp_path / "again.ckpt"
    again.write_bytes(checkpoint.to_bytes(checkpoint.load(saved[run])))
    result = run_training(TrainConfig(**RUNS[run], resume=str(again)))
    assert result.steps == RUNS[run]["steps"]


def test_a_mid_run_checkpoint_resumes_to_the_uninterrupted_trace(tmp_path):
    """Cross-checks at a step with neither params nor eval record, then the rest of the run."""
    run = dict(MID, steps=12, checksum_every=5)
    whole, part, resumed = tmp_path / "whole.jsonl", tmp_path / "part.ckpt", tmp_path / "resumed.jsonl"
    run_training(TrainConfig(**run, trace=str(whole)))
    with pytest.raises(RankFailureError):
        run_training(TrainConfig(**run, checkpoint=str(part), checkpoint_every=7, fail_at_step=8))
    assert checkpoint.load(part).step == 7
    run_training(TrainConfig(**run, resume=str(part), trace=str(resumed)))
    assert resumed.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize("what", ["v_swapped_between_ranks", "message_bytes_edited", "step_edited"])
def test_the_refusal_is_one_line_and_exit_2(saved, tmp_path, what):
    run, bad = _damaged(saved, tmp_path, what)
    args = ["--samples", "600", "--hidden", "16,16", "--batch", "32", "--simulate-ranks", "2"]
    args += ["--steps", str(run["steps"]), "--checksum-every", str(run["checksum_every"])]
    done = demo(["train", *args, "--resume", str(bad)])
    assert_usage_error(done, str(bad), DAMAGE[what][2])


def test_state_checks_never_refuse_a_run_of_any_method(tmp_path):
    """The relations the checks rely on hold in real runs of every method and residual."""
    for changes in (
        {"method": "vgc"},
        {"method": "hybrid", "tau": 0.001},
        {"method": "vgc", "residual": "reset", "zeta": 0.0},
        {"method": "topk"},
    ):
        run = dict(MID, steps=6, checksum_every=3, **changes)
        path = tmp_path / "c.ckpt"
        run_training(TrainConfig(**run, checkpoint=str(path), checkpoint_every=6))
        assert run_training(TrainConfig(**run, resume=str(path))).steps == 6
