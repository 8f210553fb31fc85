"""Worker of tests/test_torch_ddp.py: a small DDP job on P gloo processes (CPU).

    python tests/torch_ddp_worker.py SCENARIO OUTDIR [--ranks 2] [--port N]

Scenarios: ``record`` (each run of RUNS trains a few steps with the hook recording every
call; rank r writes OUTDIR/record-r.pkl), ``nan-in-hook`` (rank 1's gradient turns NaN at
step 1: its step raises inside the hook) and ``raise`` (rank 1 raises in its training loop
at step 1). The test runs it under a timeout.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys

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
    return {"replicas": replicas, "record": state.record if state else None, "params": flat.numpy().copy()}


def worker(rank: int, world: int, port: int, scenario: str, outdir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        runs = list(RUNS) if scenario == "record" else ["vgc"]
        results = {run: train(rank, world, run, scenario) for run in runs}
        with open(os.path.join(outdir, f"record-{rank}.pkl"), "wb") as f:
            pickle.dump(results, f)
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["record", "nan-in-hook", "raise"])
    ap.add_argument("outdir")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--port", type=int, default=29517)
    args = ap.parse_args(argv)
    torch.multiprocessing.spawn(
        worker, args=(args.ranks, args.port, args.scenario, args.outdir), nprocs=args.ranks
    )


if __name__ == "__main__":
    sys.exit(main())
