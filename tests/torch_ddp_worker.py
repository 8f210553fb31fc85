"""Worker of tests/test_torch_ddp.py: a small DDP job on P gloo processes (CPU).

    python tests/torch_ddp_worker.py SCENARIO OUTDIR [--ranks 2] [--port N]

Scenarios: ``record`` (each run of RUNS trains a few steps with the hook recording every
call; rank r writes OUTDIR/record-r.pkl), ``nan-in-hook`` (rank 1's gradient turns NaN at
step 1: its step raises inside the hook), ``raise`` (rank 1 raises in its training loop
at step 1), ``faults`` (a loop that catches the hook's error and goes on, once per fault
of FAULTS on rank 1 and once without the faulty batch), ``resnet`` (a small ResNet with
BatchNorm2d under the hook's defaults) and ``half`` (bfloat16 and float16 models). The
tests run it under a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import vgc_ref.torch as vt

STEPS = 4
#: run name -> (hook method or None for DDP's own allreduce, hook options)
RUNS = {
    "vgc": ("vgc", {"alpha": 1.0}),
    "hybrid": ("hybrid", {"alpha": 1.0, "tau": 0.01}),
    "strom": ("strom", {"tau": 0.01}),
    "none": ("none", {}),
    "default": (None, {}),  # DDP's own allreduce, for comparison with "none"
    # find_unused_parameters with a layer that never runs, and 2 micro-batches per step
    # accumulated under no_sync()
    "vgc-unused-accumulate": ("vgc", {"alpha": 1.0}),
    # 2 steps of plain allreduce before VGC starts
    "vgc-warmup": ("vgc", {"alpha": 1.0, "warmup_steps": 2}),
}


class WithUnused(nn.Module):
    """make_model() beside a supported layer that forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_model()
        self.unused = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_model() -> nn.Module:
    """Conv1d and Linear layers (so both variance sources run), the same on every rank."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(40, 8), nn.ReLU(), nn.Linear(8, 3)
    )


def batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * rank + step)
    return torch.randn(6, 1, 12, generator=g), torch.randint(0, 3, (6,), generator=g)


def train(rank: int, world: int, run: str, scenario: str) -> dict:
    method, options = RUNS[run]
    special = run == "vgc-unused-accumulate"
    model = WithUnused() if special else make_model()
    # Buckets of ~150 parameters: several per step, regrouped by DDP after the first step.
    ddp = nn.parallel.DistributedDataParallel(
        model,
        bucket_cap_mb=150 * 4 / 2**20,
        find_unused_parameters=special,
        gradient_as_bucket_view=run == "hybrid",  # .grad are views of the buckets themselves
    )
    state = None
    if method is not None:
        state = vt.register(ddp, method=method, **options)
        state.record = []
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    replicas = []
    for step in range(STEPS):
        x, y = batch(rank, step)
        if scenario == "nan-in-hook" and rank == 1 and step == 1:
            x[0, 0, 0] = float("nan")
        if scenario == "raise" and rank == 1 and step == 1:
            raise ValueError("rank 1 raises in its training loop")
        opt.zero_grad()
        if special:
            with ddp.no_sync():  # first micro-batch: gradients accumulate locally
                (nn.functional.cross_entropy(ddp(x[:3]), y[:3]) / 2).backward()
            (nn.functional.cross_entropy(ddp(x[3:]), y[3:]) / 2).backward()
        else:
            nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        replicas.append([t.numpy().copy() for t in gathered])
    return {
        "replicas": replicas,
        "record": state.record if state else None,
        "params": flat.numpy().copy(),
        "stats": state.stats() if state else None,
        "state": state.state_dict() if state else None,
    }


# -- a failed step changes no rank's state -----------------------------------------------

FAULT_STEPS = 5  # batches 0 .. 4
FAULT_STEP = 2  # the faulty batch (after DDP's bucket rebuild)
#: fault -> where it strikes on rank 1 at FAULT_STEP
FAULTS = {
    "nan": "a NaN gradient of the first layer (the step's last bucket)",
    "corrupt": "one byte of rank 1's first message flipped (every rank's decode fails)",
    "variance": "nn.Linear's variance term raises in backward (deferred to the hook)",
    "encode": "encode_message raises at the step's second bucket",
    "decode": "rank 1's aggregation raises at the first bucket (only step 8's agreement tells rank 0)",
}


def snapshot(state: vt.VGCHookState) -> dict:
    """The hook state as bytes: r and v of every parameter, and the counters."""
    params = {
        name: (t["r"].numpy().tobytes(), t["v"].numpy().tobytes())
        for name, t in state.state_dict()["params"].items()
    }
    counters = {
        k: getattr(state, k) for k in ("steps", "calls", "message_bytes", "dense_bytes", "sent", "elements")
    }
    return {"params": params, "counters": counters}


@contextlib.contextmanager
def inject(fault: str | None, model: nn.Module, state: vt.VGCHookState):
    """Arm ``fault`` on this rank for one step (monkeypatches undone on exit)."""
    import vgc_ref.torch.hook as hook_module
    import vgc_ref.torch.variance as variance_module

    undo = []
    if fault == "nan":
        handle = model[0].weight.register_hook(lambda g: torch.full_like(g, float("nan")))
        undo.append(handle.remove)
    elif fault == "corrupt":
        original = state._compress_aside
        calls = []

        def corrupt(params, grads):
            message, sizes, aside = original(params, grads)
            calls.append(1)
            if len(calls) == 1:
                message = message[:-1] + bytes([message[-1] ^ 0xFF])  # the CRC's last byte
            return message, sizes, aside

        state._compress_aside = corrupt
        undo.append(lambda: delattr(state, "_compress_aside"))
    elif fault == "variance":
        original_var = variance_module.linear_var

        def broken(*args, **kwargs):
            raise ValueError("injected: the variance term failed")

        variance_module.linear_var = broken
        undo.append(lambda: setattr(variance_module, "linear_var", original_var))
    elif fault == "encode":  # the hook encodes with its backend's encode_message
        original_backend = state.backend
        calls = []

        def encode(packets):
            calls.append(1)
            if len(calls) == 2:
                raise ValueError("injected: encode failed")
            return original_backend.encode_message(packets)

        state.backend = dataclasses.replace(original_backend, encode_message=encode)
        undo.append(lambda: setattr(state, "backend", original_backend))
    elif fault == "decode":
        original_aggregate = hook_module.aggregate_gathered
        calls = []

        def aggregate(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                raise ValueError("injected: decode failed")
            return original_aggregate(*args, **kwargs)

        hook_module.aggregate_gathered = aggregate
        undo.append(lambda: setattr(hook_module, "aggregate_gathered", original_aggregate))
    try:
        yield
    finally:
        for f in undo:
            f()


def train_through_fault(rank: int, world: int, fault: str | None) -> dict:
    """FAULT_STEPS batches in a loop that catches the hook's error and goes on to the next.

    ``fault`` None: the run that never sees batch FAULT_STEP. Otherwise rank 1 meets
    ``fault`` at batch FAULT_STEP; every rank records, after every batch, the hook state
    and the model's parameters as bytes, and the errors it caught.
    """
    model = make_model()
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=150 * 4 / 2**20)
    state = vt.register(ddp, method="vgc", alpha=1.0)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    after, errors = [], []
    for step in range(FAULT_STEPS):
        if fault is None and step == FAULT_STEP:
            continue
        x, y = batch(rank, step)
        armed = fault if (step == FAULT_STEP and rank == 1) else None
        opt.zero_grad()
        try:
            with inject(armed, model, state):
                nn.functional.cross_entropy(ddp(x), y).backward()
        except RuntimeError as exc:
            errors.append((step, str(exc), state.last_error.ranks))
        else:
            opt.step()
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        after.append({"step": step, "hook": snapshot(state), "params": flat.numpy().tobytes()})
    return {"after": after, "errors": errors}


def run_faults(rank: int, world: int) -> dict:
    return {fault: train_through_fault(rank, world, fault) for fault in [None, *FAULTS]}


# -- normalisation layers: a small ResNet ---------------------------------------------------


class Block(nn.Module):
    """torchvision's BasicBlock: conv-BN-ReLU-conv-BN, plus the input (a 1x1 conv-BN when
    the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.down is None else self.down(x)))


def make_resnet(classes: int = 4) -> nn.Module:
    """A torchvision-style ResNet in miniature: stem conv-BN-ReLU, two basic blocks (the
    second downsamples), global average pooling, a linear classifier."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        Block(8, 8, 1),
        Block(8, 16, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, classes),
    )


RESNET_STEPS = 12


def image_batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed learnable batch per rank: the class is which quadrant holds a bright square."""
    g = torch.Generator().manual_seed(77 + rank)
    y = torch.randint(0, 4, (8,), generator=g)
    x = 0.1 * torch.randn(8, 1, 8, 8, generator=g)
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, 0, 4 * r : 4 * r + 4, 4 * col : 4 * col + 4] += 1.0
    return x, y


def run_resnet(rank: int, world: int) -> dict:
    """The ResNet under vgc_ref.torch.register(ddp) with no extra argument."""
    model = make_resnet()
    ddp = nn.parallel.DistributedDataParallel(model)
    state = vt.register(ddp)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    x, y = image_batch(rank)
    losses, replicas = [], []
    for _ in range(RESNET_STEPS):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        replicas.append([t.numpy().copy() for t in gathered])
    dense = sorted(n for n, p in model.named_parameters() if not state.tracker.tracks(p))
    return {"losses": losses, "replicas": replicas, "dense": dense, "stats": state.stats()}


# -- float16 and bfloat16 models ------------------------------------------------------------

HALF_STEPS = 6


def run_half(rank: int, world: int) -> dict:
    """make_model() in bfloat16 and in float16, trained under the hook on a fixed batch."""
    out = {}
    for dtype in (torch.bfloat16, torch.float16):
        model = make_model().to(dtype)
        ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=150 * 4 / 2**20)
        state = vt.register(ddp, method="vgc", alpha=1.0)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.2)
        x, y = batch(rank, 0)
        losses, replicas, dtypes = [], [], set()
        for _ in range(HALF_STEPS):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(ddp(x.to(dtype)).float(), y)
            loss.backward()
            dtypes.update(str(p.grad.dtype) for p in model.parameters())
            opt.step()
            losses.append(float(loss.detach()))
            flat = torch.cat([p.detach().float().reshape(-1) for p in model.parameters()])
            gathered = [torch.empty_like(flat) for _ in range(world)]
            dist.all_gather(gathered, flat)
            replicas.append([t.numpy().copy() for t in gathered])
        out[str(dtype)] = {
            "losses": losses,
            "replicas": replicas,
            "dtypes": sorted(dtypes),
            "stats": state.stats(),
        }
    return out


SCENARIOS = {"faults": run_faults, "resnet": run_resnet, "half": run_half}


def worker(rank: int, world: int, port: int, scenario: str, outdir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        if scenario in SCENARIOS:
            results = SCENARIOS[scenario](rank, world)
        else:
            runs = list(RUNS) if scenario == "record" else ["vgc"]
            results = {run: train(rank, world, run, scenario) for run in runs}
        with open(os.path.join(outdir, f"record-{rank}.pkl"), "wb") as f:
            pickle.dump(results, f)
        # Both ranks done, and every collective issued before (gloo runs them in order)
        # finished, before the group is torn down: tearing it down with work in flight
        # aborted a rank once ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(scenario: str, outdir, timeout: float) -> subprocess.CompletedProcess:
    """Run ``scenario`` on 2 processes in a subprocess (one thread each) under ``timeout``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    cmd = [sys.executable, __file__, scenario, str(outdir), "--port", str(free_port())]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def results(outdir, ranks: int = 2) -> list:
    """Every rank's pickled results of a finished job."""
    return [pickle.loads((Path(outdir) / f"record-{r}.pkl").read_bytes()) for r in range(ranks)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["record", "nan-in-hook", "raise", *SCENARIOS])
    ap.add_argument("outdir")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--port", type=int, default=29517)
    args = ap.parse_args(argv)
    torch.multiprocessing.spawn(
        worker, args=(args.ranks, args.port, args.scenario, args.outdir), nprocs=args.ranks
    )


if __name__ == "__main__":
    sys.exit(main())
