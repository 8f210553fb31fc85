"""vgc_ref.torch's DDP communication hook on 2 gloo processes (CPU), and its state.

The multi-process jobs run tests/torch_ddp_worker.py in a subprocess under a timeout, so a
hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="vgc_ref.torch needs the torch extra (pip install -e '.[torch]')")

from torch import nn  # noqa: E402

import vgc_ref  # noqa: E402
import vgc_ref.torch as vt  # noqa: E402

WORKER = Path(__file__).with_name("torch_ddp_worker.py")
sys.path.insert(0, str(WORKER.parent))
import torch_ddp_worker as job  # noqa: E402

TIMEOUT = 240  # seconds for one 2-process job (about 30 s on a loaded 2-core machine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(scenario: str, outdir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    cmd = [sys.executable, str(WORKER), scenario, str(outdir), "--port", str(_free_port())]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Every method of the hook (and DDP's own allreduce) for 4 steps on 2 ranks."""
    out = tmp_path_factory.mktemp("ddp")
    proc = _run("record", out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [pickle.loads((out / f"record-{r}.pkl").read_bytes()) for r in range(2)]


def _steps(record: list[dict]) -> list[list[dict]]:
    """Group the hook's calls into steps: each step's buckets cover every parameter once."""
    n_params = len({name for entry in record for name in entry["names"]})
    steps, current, seen = [], [], 0
    for entry in record:
        current.append(entry)
        seen += len(entry["names"])
        if seen == n_params:
            steps.append(current)
            current, seen = [], 0
    assert not current, "a step's buckets did not cover every parameter"
    return steps


def test_importing_vgc_ref_does_not_import_torch():
    """`import vgc_ref` (and its backends registry) leaves torch unimported."""
    code = "import sys, vgc_ref, vgc_ref.backends; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("method", list(job.RUNS))
def test_replicas_stay_identical(recorded, method):
    """After every step, both ranks hold bit-identical parameters."""
    for step, (p0, p1) in enumerate(recorded[0][method]["replicas"]):
        assert np.array_equal(p0.view(np.uint32), p1.view(np.uint32)), f"step {step}"


def test_unused_layer_and_accumulation_through_ddp(recorded):
    """With find_unused_parameters and no_sync() accumulation, the layer that never runs gets
    s = 0 and sends nothing, and the others send: the job runs, checked above for identical
    replicas and reference messages."""
    for entry in recorded[0]["vgc-unused-accumulate"]["record"]:
        for packet, name in zip(vgc_ref.decode_message(entry["message"]), entry["names"]):
            if name.startswith("unused."):
                assert packet.words.shape[0] == 0, name
    sent = [vgc_ref.decode_message(e["message"]) for e in recorded[0]["vgc-unused-accumulate"]["record"]]
    assert sum(p.words.shape[0] for packets in sent for p in packets) > 0


def test_method_none_equals_ddp_allreduce_on_two_ranks(recorded):
    """Dense messages averaged in rank order give DDP's own (g0 + g1) / 2 bit for bit on 2 ranks
    (a sum of two terms has one order), so the trained parameters are identical."""
    a, b = recorded[0]["none"]["params"], recorded[0]["default"]["params"]
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("method", [run for run, (m, _) in job.RUNS.items() if m is not None])
def test_messages_equal_compressor_and_aggregate_equals_decode_accumulate(recorded, method):
    """Every call's message equals vgc_ref's Compressor on the same g and s with the state of
    each parameter carried from step to step (the hook keys it by parameter, so DDP's bucket
    rebuild after step 0 changes nothing); every call's g_hat equals decode_accumulate of both
    ranks' messages. The rebuild must actually happen for this test to mean anything."""
    hook_method, options = job.RUNS[method]
    per_rank = [_steps(recorded[r][method]["record"]) for r in range(2)]
    layouts = [[tuple(e["names"]) for e in step] for step in per_rank[0]]
    if method == "vgc-warmup":  # the rebuild happened during the warm-up: compression starts after
        assert len(per_rank[0]) == job.STEPS - 2
    elif method != "vgc-unused-accumulate":  # DDP does not rebuild with find_unused_parameters
        assert layouts[0] != layouts[1], "DDP did not rebuild its buckets after the first step"
    assert len(layouts[1]) > 1, "the model should span several buckets"
    for rank in range(2):
        states = {}
        for step in per_rank[rank]:
            for entry in step:
                sizes = [g.shape[0] for g in entry["g"]]
                hyper = {k: v for k, v in options.items() if k != "warmup_steps"}
                comp = vgc_ref.Compressor(sizes, hook_method, **hyper)
                for j, name in enumerate(entry["names"]):
                    states.setdefault(name, vgc_ref.SegmentState.zeros(sizes[j]))
                    states[name].segment_id = j
                comp.states = [states[name] for name in entry["names"]]
                variances = entry["s"] if comp.uses_variance else None
                assert comp.message(entry["g"], variances) == entry["message"]
    for c0, c1 in zip(recorded[0][method]["record"], recorded[1][method]["record"]):
        assert c0["names"] == c1["names"]
        sizes = [g.shape[0] for g in c0["g"]]
        want = vgc_ref.decode_accumulate([c0["message"], c1["message"]], sizes)
        for got0, got1, w in zip(c0["g_hat"], c1["g_hat"], want):
            assert np.array_equal(got0.view(np.uint32), w.view(np.uint32))
            assert np.array_equal(got1.view(np.uint32), w.view(np.uint32))


def test_hook_sees_the_local_gradient_and_variance_term(recorded):
    """The g and s the hook compressed at step 0 are rank r's own mean-loss gradient and the
    variance tracker's term on an undistributed copy of the model, bit for bit (with one
    thread, as the workers run: the convolution's backward sums in a thread-dependent order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_local_gradients(recorded)
    finally:
        torch.set_num_threads(threads)


def _check_local_gradients(recorded):
    for rank in range(2):
        model = job.make_model()
        tracker = vt.VarianceTracker(model)
        x, y = job.batch(rank, 0)
        nn.functional.cross_entropy(model(x), y).backward()
        params = dict(model.named_parameters())
        step0 = recorded[rank]["vgc"]["record"][0]
        for name, g, s in zip(step0["names"], step0["g"], step0["s"]):
            p = params[name]
            assert np.array_equal(g, p.grad.reshape(-1).numpy()), name
            assert np.array_equal(s, tracker.pop(p).reshape(-1).numpy()), name


@pytest.mark.parametrize("scenario", ["nan-in-hook", "raise"])
def test_a_rank_that_raises_ends_the_job(tmp_path, scenario):
    """A NaN gradient on rank 1 (its step raises inside the hook: every rank learns it from the
    length exchange, and backward raises VGCStepError's text naming rank 1 on every rank) or an
    exception in rank 1's loop (rank 1 leaves the job) ends the whole job with an error, well
    within the timeout, instead of leaving rank 0 waiting. tests/test_torch_faults.py checks a
    loop that catches the error and goes on."""
    proc = _run(scenario, tmp_path)
    assert proc.returncode != 0
    if scenario == "nan-in-hook":
        assert "VGCStepError" in proc.stderr and "failed on rank(s) [1]" in proc.stderr, proc.stderr[-3000:]
    else:
        assert "rank 1 raises in its training loop" in proc.stderr, proc.stderr[-3000:]


def _local_state(method: str = "vgc"):
    model = job.make_model()
    return model, vt.VGCHookState(model, method, alpha=1.0)


def _local_step(model, state, step: int) -> bytes:
    """One step of the hook's compression without DDP (one bucket of every parameter)."""
    model.zero_grad()
    x, y = job.batch(0, step)
    nn.functional.cross_entropy(model(x), y).backward()
    params = list(model.parameters())
    return state.compress(params, [p.grad for p in params])[0]


def test_state_dict_round_trip_continues_identically():
    """A hook state restored from state_dict() after 2 steps sends the same messages in the
    next steps as the original; the saved tensors are copies, not views of the state."""
    model_a, state_a = _local_state()
    model_b, state_b = _local_state()
    for step in range(2):
        _local_step(model_a, state_a, step)
    saved = state_a.state_dict()
    assert any(t["r"].abs().sum() > 0 for t in saved["params"].values())
    state_b.load_state_dict(saved)
    snapshot = {k: v["r"].clone() for k, v in saved["params"].items()}
    for step in range(2, 4):
        assert _local_step(model_a, state_a, step) == _local_step(model_b, state_b, step)
    assert all(torch.equal(saved["params"][k]["r"], snapshot[k]) for k in snapshot)


def test_load_state_dict_rejects_mismatches_state_unchanged():
    """Another method, a missing parameter or a wrong length is refused with the field named,
    and the state is left as it was."""
    model, state = _local_state()
    _local_step(model, state, 0)
    before = state.state_dict()
    other = vt.VGCHookState(job.make_model(), "none")
    with pytest.raises(vgc_ref.InputError, match="method"):
        state.load_state_dict(other.state_dict())
    bad = state.state_dict()
    name = next(iter(bad["params"]))
    bad["params"][name]["v"] = torch.zeros(3)
    with pytest.raises(vgc_ref.InputError, match=name.replace(".", r"\.")):
        state.load_state_dict(bad)
    bad = state.state_dict()
    del bad["params"][name]
    with pytest.raises(vgc_ref.InputError, match="names differ"):
        state.load_state_dict(bad)
    after = state.state_dict()
    for k in before["params"]:
        assert torch.equal(before["params"][k]["r"], after["params"][k]["r"])


def test_missing_variance_term_names_the_parameter():
    """A parameter outside the supported layers has no s under vgc: with untracked='error' the
    error names it, and untracked='zero' sends it with s = 0 instead."""
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    state = vt.VGCHookState(model, "vgc", untracked="error")
    model(torch.randn(5, 3)).sum().backward()
    params = list(model.parameters())
    with pytest.raises(vgc_ref.InputError, match=r"1\.weight"):
        state.compress(params, [p.grad for p in params])
    model.zero_grad()
    zero = vt.VGCHookState(model, "vgc", untracked="zero")
    model(torch.randn(5, 3)).sum().backward()
    message, sizes = zero.compress(params, [p.grad for p in params])
    assert sizes == [p.numel() for p in params]
    assert len(vgc_ref.decode_message(message)) == len(params)


def test_unused_tracked_layer_gets_zero_variance():
    """A supported layer that did not run this step (DDP's find_unused_parameters fills its
    gradient with zeros) gets s = 0, its exact term: nothing of it is sent, v only decays."""
    model = nn.ModuleDict({"used": nn.Linear(3, 2), "unused": nn.Linear(3, 2)})
    state = vt.VGCHookState(model, "vgc")
    model["used"](torch.randn(4, 3)).sum().backward()
    params = list(model.parameters())
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    message, _ = state.compress(params, grads)
    packets = vgc_ref.decode_message(message)
    counts = {name: pk.words.shape[0] for (name, _), pk in zip(model.named_parameters(), packets)}
    assert counts["unused.weight"] == 0 and counts["unused.bias"] == 0
    assert counts["used.weight"] > 0


def test_example_trains_on_torchrun(tmp_path):
    """examples/ddp_mnist1d.py runs under torchrun on 2 gloo processes (3 steps of each method)
    and prints the demo-style summary with a compression ratio above 1 for vgc."""
    example = Path(__file__).resolve().parent.parent / "examples" / "ddp_mnist1d.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", str(_free_port()), str(example), "--steps", "3", "--epochs", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("  ") and " vs " not in line]
    lines = {row[0]: row for row in rows}
    assert "summary: 2 ranks, 3 steps" in proc.stdout
    assert float(lines["vgc"][2].rstrip("x")) > 1.0 and lines["none"][2] == "1.0x", proc.stdout


def test_autocast_gives_float32_terms_and_the_step_runs():
    """Under torch.autocast (bfloat16 activations, float32 parameters) the gradients stay
    float32 and the variance terms are float32 of the parameters' shapes: the hook's step runs."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    state = vt.VGCHookState(model, "vgc")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(5, 4))
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    params = list(model.parameters())
    terms = [state.tracker._s[p] for p in params]
    assert all(s.dtype == torch.float32 and s.shape == p.shape for s, p in zip(terms, params))
    message, _ = state.compress(params, [p.grad for p in params])
    assert [p.n for p in vgc_ref.decode_message(message)] == [p.numel() for p in params]


def test_untracked_parameters_are_sent_dense_by_default():
    """By default a parameter no tracked layer owns (LayerNorm's) goes as a DENSE packet holding
    its gradient exactly, its r and v stay 0, and the tracked ones are compressed."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    state = vt.VGCHookState(model, "vgc", alpha=1.0)
    model(torch.randn(5, 3)).sum().backward()
    params = list(model.parameters())
    grads = [p.grad.clone() for p in params]
    packets = vgc_ref.decode_message(state.compress(params, [p.grad for p in params])[0])
    names = [name for name, _ in model.named_parameters()]
    for name, g, packet in zip(names, grads, packets):
        if name.startswith("1."):
            assert packet.codec == vgc_ref.Codec.DENSE, name
            assert np.array_equal(packet.words, g.reshape(-1).numpy().view(np.uint32)), name
            saved = state.state_dict()["params"][name]
            assert not saved["r"].any() and not saved["v"].any(), name
        else:
            assert packet.codec == vgc_ref.Codec.VGC_Q4, name


@pytest.mark.parametrize("thing", [nn.Linear(3, 3), nn.Sequential(nn.Linear(3, 3)), "model", None])
def test_register_refuses_what_is_not_ddp(thing):
    """register() given anything but a DistributedDataParallel raises TypeError in one line that
    names what it got and what it needs, before touching the object."""
    with pytest.raises(TypeError) as info:
        vt.register(thing)
    text = str(info.value)
    assert "\n" not in text and "DistributedDataParallel" in text, text
    assert type(thing).__qualname__ in text, text


def test_warmup_steps_are_ddp_allreduce_and_leave_the_state_alone(recorded):
    """With warmup_steps=2 the first two steps give DDP's own allreduce average bit for bit
    (the parameters after them equal the "default" run's), compression starts at step 2 from
    zero state (the message test above replays it from zero), and stats() counts all steps."""
    warm, ddp = recorded[0]["vgc-warmup"], recorded[0]["default"]
    for step in range(2):
        for a, b in zip(warm["replicas"][step], ddp["replicas"][step]):
            assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), step
    assert not np.array_equal(warm["replicas"][2][0], ddp["replicas"][2][0])
    assert warm["stats"]["steps"] == job.STEPS and warm["stats"]["warmup_steps"] == 2


def test_warmup_must_be_a_count():
    """warmup_steps is refused unless it is an integer >= 0, with the field named."""
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(vgc_ref.InputError, match="warmup_steps"):
            vt.VGCHookState(job.make_model(), "vgc", warmup_steps=bad)


@pytest.mark.parametrize("method", ["vgc", "vgc-warmup", "strom", "none"])
def test_stats_are_the_counts_of_the_messages(recorded, method):
    """stats() and ratio() equal what the recorded messages give: message bytes their lengths,
    dense bytes 4 per element, sent the packets' words; a warm-up step counts its elements
    as dense both ways; ratio = dense / message bytes."""
    run = recorded[0][method]
    record, stats = run["record"], run["stats"]
    n_params = run["params"].shape[0]
    warm = job.RUNS[method][1].get("warmup_steps", 0)
    message = sum(len(e["message"]) for e in record) + warm * 4 * n_params
    dense = 4 * sum(g.shape[0] for e in record for g in e["g"]) + warm * 4 * n_params
    sent = sum(p.words.shape[0] for e in record for p in vgc_ref.decode_message(e["message"]))
    assert stats["steps"] == job.STEPS and stats["calls"] >= job.STEPS
    assert stats["message_bytes"] == message and stats["dense_bytes"] == dense
    assert stats["sent"] == sent + warm * n_params
    assert stats["elements"] == dense // 4 == job.STEPS * n_params
    assert stats["ratio"] == dense / message
    assert stats["sent_fraction"] == stats["sent"] / stats["elements"]
    if method == "none":
        assert stats["ratio"] < 1.0  # headers make dense messages slightly larger than 4n
    elif method != "vgc-warmup":
        assert stats["ratio"] > 1.0


def test_stats_before_any_step():
    """A fresh state reports zero counts and nan ratios."""
    stats = vt.VGCHookState(job.make_model(), "vgc").stats()
    assert stats["steps"] == stats["message_bytes"] == 0
    assert np.isnan(stats["ratio"]) and np.isnan(stats["sent_fraction"])


def test_the_default_backend_is_numba_cpu_unless_one_is_named(monkeypatch):
    """No backend named and no $VGC_BACKEND: numba-cpu (numpy where it cannot load);
    $VGC_BACKEND or a named backend is kept as it is."""
    import vgc_ref.torch.hook as hook_module
    from vgc_ref.backends import ENV_VAR

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert vt.VGCHookState(job.make_model(), "vgc").backend.name == "numba-cpu"
    assert vt.VGCHookState(job.make_model(), "vgc", backend="numpy").backend.name == "numpy"
    monkeypatch.setenv(ENV_VAR, "numpy")
    assert vt.VGCHookState(job.make_model(), "vgc").backend.name == "numpy"
    monkeypatch.delenv(ENV_VAR)

    def no_numba(name=None):
        if name == "numba-cpu":
            raise ImportError("no numba here")
        return vgc_ref.backends.get_backend(name)

    monkeypatch.setattr(hook_module, "get_backend", no_numba)
    assert vt.VGCHookState(job.make_model(), "vgc").backend.name == "numpy"
