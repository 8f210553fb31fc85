"""The DDP hook's device path (vgc_ref/torch/device.py; docs/torch.md, "On a GPU").

Two kinds of test:

* **on Numba's CUDA simulator** (everywhere without a GPU, CI included):
  ``device_path="simulate"`` sends CPU buckets through the device path -- g, s and g_hat
  as device arrays on the tensors' memory, r and v in DeviceSegmentStates with spares,
  the commit by swapping -- with the simulator's kernels. Each is compared with the host
  path (today's CPU hook) bit for bit: messages, g_hat, counters, r and v, parameters, and
  what an aborted step leaves. Tiny models: the simulator runs every thread in Python.
* **on a GPU** (marked ``gpu``; skipped without CUDA or with the simulator on): the same
  comparisons on CUDA buckets through NCCL, with the state checked to be real device
  arrays and no host view of a gradient or of the state taken during training; 2 GPUs
  when there are 2.

The 2-rank jobs run this file as their worker, under a timeout::

    python tests/test_torch_device.py MODE RANK WORLD PORT OUT     (MODE: simulate or cuda)
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

import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402

import vgc_ref  # noqa: E402
import vgc_ref.torch as vt  # noqa: E402
import vgc_ref.torch.hook as hook_module  # noqa: E402
from vgc_ref.encoding import encode_message  # noqa: E402
from vgc_ref.torch import device as dev  # noqa: E402

SIMULATOR = dev.simulator_on()
ON_GPU = torch.cuda.is_available() and not SIMULATOR
needs_simulator = pytest.mark.skipif(
    not SIMULATOR, reason="Numba's CUDA simulator is off (a GPU runs the gpu tests)"
)
needs_gpu = pytest.mark.skipif(not ON_GPU, reason="no CUDA GPU (or the CUDA simulator is on)")

STEPS = 4
FAULT_STEP = 2
TIMEOUT = 300  # seconds for one 2-process job
#: run -> (method, options)
METHODS = {
    "vgc": ("vgc", {"alpha": 1.0}),
    "hybrid": ("hybrid", {"alpha": 1.0, "tau": 0.01}),
    "strom": ("strom", {"tau": 0.01}),
    "none": ("none", {}),
}


def make_model() -> nn.Module:
    """Two linear layers and a LayerNorm (sent dense): 29 parameters, the same on every rank."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.ReLU(), nn.Linear(3, 2))


def batch(rank: int, step: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * rank + step)
    x, y = torch.randn(5, 4, generator=g), torch.randint(0, 2, (5,), generator=g)
    return x.to(device), y.to(device)


class AggregationFails:
    """Make the hook's aggregation (step 7) raise at one step: the spares were stepped, then aborted."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.now = -1
        self.original = hook_module.aggregate_gathered

    def __call__(self, *args):
        if self.now == self.step:
            raise RuntimeError("injected: the aggregation failed")
        return self.original(*args)


def train(
    path: str, run: str, *, device: str = "cpu", rank: int = 0, group=None, fault=None, **extra
) -> dict:
    """STEPS steps of DDP on ``device`` under the hook; a loop that catches the hook's error."""
    method, options = METHODS[run]
    model = make_model().to(device)
    ddp = nn.parallel.DistributedDataParallel(
        model, bucket_cap_mb=10 * 4 / 2**20, process_group=group, device_ids=None
    )
    state = vt.register(ddp, method, device_path=path, process_group=group, **options, **extra)
    state.record = []
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    failed, errors, states = [], [], []
    for step in range(STEPS):
        handle = None
        if fault == "nan" and step == FAULT_STEP:
            handle = model[0].weight.register_hook(lambda g: torch.full_like(g, float("nan")))
        if isinstance(fault, AggregationFails):
            fault.now = step
        x, y = batch(rank, step, device)
        opt.zero_grad()
        state.last_error = None
        try:
            nn.functional.cross_entropy(ddp(x), y).backward()
            opt.step()
        except RuntimeError:
            assert state.last_error is not None
            failed.append(step)
            errors.append(str(state.last_error))
        if handle is not None:
            handle.remove()
        states.append(state.state_dict())
    params = torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])
    return {
        "state": state,
        "model": model,
        "hook": states,
        "failed": failed,
        "errors": errors,
        "params": params.numpy(),
        "stats": state.stats(),
    }


def bits(a) -> np.ndarray:
    return np.asarray(a, np.float32).view(np.uint32)


def assert_same_state(a: dict, b: dict) -> None:
    assert a["params"].keys() == b["params"].keys()
    for name in a["params"]:
        for key in ("r", "v"):
            assert np.array_equal(bits(a["params"][name][key]), bits(b["params"][name][key])), (name, key)


def assert_same_runs(a: dict, b: dict) -> None:
    """Messages, g_hat, counters, every step's r and v and the parameters: bit for bit."""
    ra, rb = a["state"].record, b["state"].record
    assert [e["names"] for e in ra] == [e["names"] for e in rb]
    assert [e["message"] for e in ra] == [e["message"] for e in rb]
    for ea, eb in zip(ra, rb):
        for ga, gb in zip(ea["g_hat"], eb["g_hat"]):
            assert np.array_equal(bits(ga), bits(gb))
    assert a["stats"] == b["stats"] or str(a["stats"]) == str(b["stats"])  # nan != nan
    assert a["failed"] == b["failed"]
    for sa, sb in zip(a["hook"], b["hook"]):
        assert_same_state(sa, sb)
    assert np.array_equal(bits(a["params"]), bits(b["params"]))


def assert_messages_are_the_references(record: list[dict], method: str, options: dict) -> None:
    """Every call's message equals the NumPy reference's on the recorded g and s, segment by
    segment (the LayerNorm's "1." parameters dense under vgc and hybrid), with each
    parameter's state carried from committed step to committed step."""
    states: dict[str, vgc_ref.SegmentState] = {}
    for entry in record:
        packets, s_iter = [], iter(entry["s"])
        for j, (name, g) in enumerate(zip(entry["names"], entry["g"])):
            st = states.setdefault(name, vgc_ref.SegmentState.zeros(g.shape[0]))
            st.segment_id = j
            if method in ("vgc", "hybrid") and name.startswith("1."):
                packets.append(vgc_ref.dense_packet(j, g))
                continue
            comp = vgc_ref.Compressor([g.shape[0]], method, backend="numpy", **options)
            comp.states = [st]
            packets.extend(comp.compress([g], [next(s_iter)] if comp.uses_variance else None))
        assert encode_message(packets) == entry["message"], entry["names"]


@pytest.fixture(scope="module")
def world_of_one(tmp_path_factory):
    """A gloo process group of one rank in this process (destroyed after the module)."""
    if dist.is_initialized():
        pytest.skip("a process group already exists in this process")
    store = dist.FileStore(str(tmp_path_factory.mktemp("pg") / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


# -- on the simulator ------------------------------------------------------------------------


@needs_simulator
@pytest.mark.parametrize("run", list(METHODS))
def test_simulated_device_path_equals_the_host_path_bit_for_bit(world_of_one, run):
    """Through DDP (one rank), the device path on the simulator sends the host path's messages,
    writes its g_hat, keeps its r and v after every step and trains the same parameters."""
    host = train("host", run)
    device = train("simulate", run)
    assert_same_runs(host, device)
    method, options = METHODS[run]
    assert_messages_are_the_references(device["state"].record, method, options)


@needs_simulator
def test_simulated_state_lives_in_device_arrays_and_commits_by_swapping(world_of_one, monkeypatch):
    """On the device path the tracked parameters' r and v are device arrays (the dense
    LayerNorm's stay on the host, 0); a committed step makes the spares it ran on the state
    (no copy back) and keeps the old state as the next spares; no host view of a gradient is
    taken (untracked='zero': nothing is dense)."""
    nc = dev.numba_cuda()
    calls = []
    monkeypatch.setattr(hook_module, "tensor_as_numpy", lambda t: calls.append(t) or t.numpy())
    run = train("simulate", "vgc", untracked="zero")
    assert calls == []
    state = run["state"]
    for ps in state.params.values():
        assert ps.device is not None, ps.name
        for st, spare in zip(ps.device.states, ps.device.spares):
            assert (
                isinstance(st, nc.DeviceSegmentState)
                and nc.is_device_array(st.r)
                and nc.is_device_array(st.v)
            )
            assert spare is not st
        assert all(not st.r.any() for st in ps.states), "the host pieces are not the state any more"
    dense = train("simulate", "vgc")["state"]
    assert [ps.device is None for ps in dense.params.values()] == [False, False, True, True, False, False]

    model, params = run["model"], list(state.params)
    x, y = batch(0, 9)

    def one_step(with_terms: bool) -> None:  # the hook's compress, without DDP
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if not with_terms:
            state.tracker.clear()
        state.compress(params, [p.grad for p in params])

    before = {p: (ps.device.states, ps.device.spares) for p, ps in state.params.items()}
    with pytest.raises(vgc_ref.InputError, match="variance"):  # no term: nothing commits
        one_step(with_terms=False)
    assert all((ps.device.states, ps.device.spares) == before[p] for p, ps in state.params.items())
    one_step(with_terms=True)  # committed: the spares it ran on are the state now
    assert all((ps.device.spares, ps.device.states) == before[p] for p, ps in state.params.items())


@needs_simulator
@pytest.mark.parametrize("fault", ["nan", "aggregate"])
def test_simulated_aborted_step_leaves_the_committed_device_state(world_of_one, monkeypatch, fault):
    """A step that fails -- a NaN gradient (the kernels refuse it before writing) or an
    aggregation that raises after every bucket's spares were stepped -- raises, leaves r and v
    (read back from the device) as before the step, and the run goes on exactly as the host
    path's run with the same fault."""
    runs = {}
    for path in ("host", "simulate"):
        inject = fault
        if fault == "aggregate":
            inject = AggregationFails(FAULT_STEP)
            monkeypatch.setattr(hook_module, "aggregate_gathered", inject)
        runs[path] = train(path, "vgc", fault=inject)
    for run in runs.values():
        assert run["failed"] == [FAULT_STEP]
        assert_same_state(run["hook"][FAULT_STEP], run["hook"][FAULT_STEP - 1])
    assert_same_runs(runs["host"], runs["simulate"])


@needs_simulator
def test_simulated_state_dict_round_trip_through_the_device():
    """state_dict() reads r and v back from the device; load_state_dict() into a hook whose
    state is already on the device, into one whose is not yet, and into a host-path hook
    continues with the same messages as the original (the hook's compress, without DDP)."""

    def local(path):
        model = make_model()
        return model, vt.VGCHookState(model, "vgc", alpha=1.0, device_path=path)

    def step(model, state, k):
        model.zero_grad()
        x, y = batch(0, k)
        nn.functional.cross_entropy(model(x), y).backward()
        params = list(model.parameters())
        return state.compress(params, [p.grad for p in params])[0]

    model_a, a = local("simulate")
    for k in range(2):
        step(model_a, a, k)
    saved = a.state_dict()
    assert any(t["r"].abs().sum() > 0 for t in saved["params"].values())
    model_b, b = local("simulate")
    step(model_b, b, 0)  # b's state is on the device now
    b.load_state_dict(saved)
    model_c, c = local("host")
    c.load_state_dict(saved)
    model_d, d = local("simulate")  # loaded before its state is on the device
    d.load_state_dict(saved)
    for k in range(2, 4):
        want = step(model_a, a, k)
        assert step(model_b, b, k) == want
        assert step(model_c, c, k) == want
        assert step(model_d, d, k) == want


def test_device_path_option_is_checked():
    """An unknown device_path is refused naming the field."""
    with pytest.raises(vgc_ref.InputError, match="device_path"):
        vt.VGCHookState(make_model(), "vgc", device_path="gpu")


def test_device_view_refuses_a_tensor_it_would_copy():
    """device_view works on the tensor's own memory or not at all."""
    t = torch.zeros(4, 4).T
    with pytest.raises(ValueError, match="contiguous"):
        dev.device_view(t)


# -- 2 ranks (a subprocess job) --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(mode: str, out: Path, world: int = 2) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    if mode == "simulate":
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    else:
        env.pop("NUMBA_ENABLE_CUDASIM", None)
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, mode, str(r), str(world), port, str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    errors = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        if p.returncode != 0:
            errors.append(err[-3000:])
    assert not errors, errors
    return [pickle.loads((out / f"rank-{r}.pkl").read_bytes()) for r in range(world)]


def check_two_ranks(results: list[dict]) -> None:
    """Both ranks raised at the faulty step only (rank 1's aggregation failed, rank 0 learnt it
    from the agreement), neither changed its state there; every committed message is the
    reference's, and every g_hat is decode_accumulate of both ranks' messages in rank order."""
    method, options = METHODS["vgc"]
    for res in results:
        assert res["failed"] == [FAULT_STEP]
        assert "failed on rank(s) [1]" in res["errors"][0]
        assert_same_state(res["hook"][FAULT_STEP], res["hook"][FAULT_STEP - 1])
        assert_messages_are_the_references(res["record"], method, options)
    for c0, c1 in zip(results[0]["record"], results[1]["record"]):
        sizes = [g.shape[0] for g in c0["g"]]
        want = vgc_ref.decode_accumulate([c0["message"], c1["message"]], sizes)
        for got0, got1, w in zip(c0["g_hat"], c1["g_hat"], want):
            assert np.array_equal(bits(got0), bits(w)) and np.array_equal(bits(got1), bits(w))
    assert np.array_equal(bits(results[0]["params"]), bits(results[1]["params"]))


@needs_simulator
def test_two_simulated_ranks_exchange_in_rank_order_and_commit_together(tmp_path):
    """2 gloo processes on the simulated device path, rank 1's aggregation failing at one step."""
    check_two_ranks(run_job("simulate", tmp_path))


# -- on a GPU -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nccl_group(world_of_one):
    if not ON_GPU:
        pytest.skip("no CUDA GPU")
    return dist.new_group(ranks=[0], backend="nccl")


@pytest.mark.parametrize("run", list(METHODS))
@pytest.mark.gpu
@needs_gpu
def test_gpu_one_process_messages_equal_the_host_paths(nccl_group, run):
    """One rank, NCCL, CUDA buckets: the device path (chosen by itself: no backend named) sends
    the bytes the host path sends for the same GPU gradients, writes the same g_hat, keeps the
    same r and v, and its messages are the NumPy reference's on the recorded g and s."""
    device = train("auto", run, device="cuda", group=nccl_group)
    assert device["state"]._device_backend.name == "numba-cuda"
    host = train("host", run, device="cuda", group=nccl_group)
    assert_same_runs(host, device)
    method, options = METHODS[run]
    assert_messages_are_the_references(device["state"].record, method, options)


@pytest.mark.gpu
@needs_gpu
def test_gpu_state_stays_on_the_device(nccl_group, monkeypatch):
    """During training no host view of a gradient is taken and no state is copied to the host;
    r and v are device arrays on the GPU (not the simulator's)."""
    nc = dev.numba_cuda()
    assert not nc.SIMULATOR

    def refuse(*args, **kwargs):
        raise AssertionError("a host copy on the device path")

    monkeypatch.setattr(hook_module, "tensor_as_numpy", refuse)
    monkeypatch.setattr(nc.DeviceSegmentState, "to_host", refuse)
    monkeypatch.setattr(nc.DeviceSegmentState, "copy", refuse)
    model = make_model().cuda()
    ddp = nn.parallel.DistributedDataParallel(model, process_group=nccl_group)
    state = vt.register(ddp, "vgc", alpha=1.0, untracked="zero", process_group=nccl_group)
    for step in range(STEPS):
        x, y = batch(0, step, "cuda")
        nn.functional.cross_entropy(ddp(x), y).backward()
    assert state.steps == STEPS
    for ps in state.params.values():
        for st in ps.device.states:
            assert isinstance(st, nc.DeviceSegmentState)
            assert nc.is_device_array(st.r) and nc.is_device_array(st.v)
            assert st.r.__cuda_array_interface__["data"][0] != 0


@pytest.mark.gpu
@needs_gpu
def test_two_gpus_exchange_in_rank_order_and_commit_together(tmp_path):
    """2 processes, one GPU each, NCCL: as the simulated 2-rank test."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    check_two_ranks(run_job("cuda", tmp_path))


# -- the worker ------------------------------------------------------------------------------


def worker(mode: str, rank: int, world: int, port: int, out: Path) -> None:
    """One rank of the 2-rank job: vgc for STEPS steps, rank 1's aggregation failing at FAULT_STEP."""
    device = f"cuda:{rank}" if mode == "cuda" else "cpu"
    if mode == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl" if mode == "cuda" else "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
    )
    fault = AggregationFails(FAULT_STEP if rank == 1 else -2)
    hook_module.aggregate_gathered = fault
    path = "auto" if mode == "cuda" else "simulate"
    extra = {} if mode == "cuda" else {"backend": "numba-cuda"}
    res = train(path, "vgc", device=device, rank=rank, fault=fault, **extra)
    res["record"] = res.pop("state").record
    del res["model"]
    (out / f"rank-{rank}.pkl").write_bytes(pickle.dumps(res))
    dist.destroy_process_group()


if __name__ == "__main__":
    mode_, rank_, world_, port_, out_ = sys.argv[1:6]
    worker(mode_, int(rank_), int(world_), int(port_), Path(out_))
