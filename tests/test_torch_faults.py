"""A failed step changes no rank's state: vgc_ref.torch's hook commits a step on every rank or on none.

One 2-process gloo job (tests/torch_ddp_worker.py, scenario ``faults``) trains the same
model through FAULT_STEPS batches in a loop that catches the hook's error and goes on:
once without the faulty batch, and once per fault of ``FAULTS``, which strikes on rank 1
at batch FAULT_STEP. After every batch each rank records its hook state (r and v of every
parameter, the counters) and the model's parameters as bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="vgc_ref.torch needs the torch extra (pip install -e '.[torch]')")

sys.path.insert(0, str(Path(__file__).parent))
import torch_ddp_worker as job

TIMEOUT = 240  # seconds (about 15 s on a loaded 2-core machine)


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults")
    proc = job.launch("faults", out, TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return job.results(out)


@pytest.mark.parametrize("fault", list(job.FAULTS))
def test_every_rank_raises_at_the_faulty_batch_only(faults, fault):
    """Every rank's backward raises at the faulty batch, and only there, with VGCStepError's
    text naming the rank that failed (rank 1; for a corrupted message every rank's decode
    fails, and the decoder's message names rank 1's message)."""
    for rank in range(2):
        errors = faults[rank][fault]["errors"]
        assert [e[0] for e in errors] == [job.FAULT_STEP], errors
        _, text, ranks = errors[0]
        assert "VGCStepError" in text and "No rank's hook state changed" in text, text
        if fault == "corrupt":
            assert ranks == [0, 1] and "message of rank 1" in text, text
        else:
            assert ranks == [1], text
            assert f"rank(s) {ranks}" in text


@pytest.mark.parametrize("fault", list(job.FAULTS))
def test_state_after_a_fault_equals_the_run_without_the_faulty_batch(faults, fault):
    """On every rank, r and v of every parameter, the counters and the model's parameters
    are byte for byte what they were before the faulty batch, and after each later batch
    what they are in the run that never saw the faulty batch."""
    for rank in range(2):
        run = faults[rank][fault]["after"]
        clean = faults[rank][None]["after"]
        by_step = {entry["step"]: entry for entry in run}
        failed, before = by_step[job.FAULT_STEP], by_step[job.FAULT_STEP - 1]
        assert failed["hook"] == before["hook"], f"rank {rank}: the failed step changed the state"
        assert failed["params"] == before["params"]
        kept = [entry for entry in run if entry["step"] != job.FAULT_STEP]
        assert [e["step"] for e in kept] == [e["step"] for e in clean]
        for got, want in zip(kept, clean):
            assert got["hook"]["counters"] == want["hook"]["counters"], (rank, got["step"])
            assert got["hook"]["params"] == want["hook"]["params"], (rank, got["step"])
            assert got["params"] == want["params"], (rank, got["step"])


def test_the_run_without_faults_compresses(faults):
    """The comparison above means something: r changes from step to step, and steps count."""
    after = faults[0][None]["after"]
    assert after[-1]["hook"]["counters"]["steps"] == job.FAULT_STEPS - 1
    assert len({entry["hook"]["params"]["3.weight"] for entry in after}) == len(after)
