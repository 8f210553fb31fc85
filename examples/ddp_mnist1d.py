"""The demo's MNIST-1D CNN trained with PyTorch DDP, VGC as the communication hook.

    torchrun --nproc_per_node 4 examples/ddp_mnist1d.py
    torchrun --nproc_per_node 4 examples/ddp_mnist1d.py --alpha 4 --variance approx --baseline ddp

Gloo on CPU. The lines a training script adds for VGC are marked ``# VGC``: a
:class:`vgc_ref.torch` hook registered on the DDP model, and (optionally) its counters.
The rest reproduces ``python -m mpi_demo train --model cnn --dataset mnist1d --products blas``:
the same data (the pinned MNIST-1D of mpi_demo.data), the same initial parameters, the same
global mini-batches split over the ranks in the same way, and the same momentum SGD; PyTorch
computes the forward and backward passes, so results agree with the NumPy demo to float32
rounding, not bit for bit (docs/torch.md gives both).

Rank 0 prints one line per epoch and, at the end, a summary in the demo's format: each
method's test accuracy, compression ratio (dense bytes / message bytes over all ranks),
fraction of elements sent, message bytes per rank and step, milliseconds per step.
"""

from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

import numpy as np

from vgc_ref._cli import ArgumentParser

# torch, vgc_ref.torch and mpi_demo are imported after the arguments are parsed, so that
# --help, --version and a wrong argument answer at once.


def make_cnn(channels=(32, 32, 32), length: int = 40, classes: int = 10):
    """mpi_demo/cnn.py's network: three stride-2 convolutions with ReLU, then a dense layer."""
    import torch
    from torch import nn

    class CNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            geometry = ((5, 2, 2), (3, 2, 1), (3, 2, 1))  # kernel, stride, padding (cnn.GEOMETRY)
            ins = (1, *channels[:-1])
            self.convs = nn.ModuleList(
                nn.Conv1d(i, o, k, stride=s, padding=p) for i, o, (k, s, p) in zip(ins, channels, geometry)
            )
            n = length
            for k, s, p in geometry:
                n = (n + 2 * p - k) // s + 1
            self.dense = nn.Linear(n * channels[-1], classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 40]
            h = x[:, None, :]
            for conv in self.convs:
                h = torch.relu(conv(h))
            return self.dense(h.transpose(1, 2).flatten(1))  # position major, as the demo flattens

        def load_demo_params(self, params: list[np.ndarray]) -> None:
            """The demo's segments (W: [kernel*C_in, C_out] and [P*C, classes]) in torch's layout."""
            with torch.no_grad():
                for i, conv in enumerate(self.convs):
                    c_out, c_in, k = conv.weight.shape
                    w = params[2 * i].reshape(k, c_in, c_out).transpose(2, 1, 0)
                    conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
                    conv.bias.copy_(torch.from_numpy(params[2 * i + 1]))
                self.dense.weight.copy_(torch.from_numpy(params[-2].reshape(-1, self.dense.out_features).T))
                self.dense.bias.copy_(torch.from_numpy(params[-1]))

    return CNN()


def train(args, method: str, data, rank: int, world: int) -> dict:
    """One run of ``method`` ("vgc", "hybrid", "strom", "none" or "ddp": DDP's own allreduce)."""
    import torch
    import torch.distributed as dist
    from torch import nn

    import vgc_ref.torch
    from mpi_demo import network
    from mpi_demo.data import epoch_order, shard_bounds

    torch.manual_seed(args.seed)
    model = make_cnn(tuple(args.channels))
    net = network.build(
        SimpleNamespace(model="cnn", channels=tuple(args.channels), variance=args.variance), 40, 10
    )
    model.load_demo_params(net.init_params(args.seed))
    ddp = nn.parallel.DistributedDataParallel(model)
    hook = None
    if method != "ddp":
        options = {"alpha": args.alpha, "zeta": args.zeta} if method in ("vgc", "hybrid") else {}
        if method in ("strom", "hybrid"):
            options["tau"] = args.tau
        hook = vgc_ref.torch.register(  # VGC
            ddp, method, conv=args.variance, backend=args.backend, warmup_steps=args.warmup_steps, **options
        )
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = torch.optim.SGD(
        [{"params": weights, "weight_decay": args.weight_decay}, {"params": biases, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=args.momentum,
    )
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    n_train = x_train.shape[0]
    steps_per_epoch = n_train // args.batch
    total = (
        args.epochs * steps_per_epoch
        if args.steps is None
        else min(args.steps, args.epochs * steps_per_epoch)
    )
    start, stop = shard_bounds(args.batch, world)[rank]
    step_seconds, test_acc = [], None
    for t in range(total):
        epoch, i = divmod(t, steps_per_epoch)
        if i == 0:
            order = epoch_order(args.seed, epoch, n_train)
            seen = correct = 0
            loss_sum = 0.0
        idx = torch.from_numpy(order[i * args.batch : (i + 1) * args.batch][start:stop])
        t0 = time.perf_counter()
        logits = ddp(x_train[idx])
        loss = nn.functional.cross_entropy(logits, y_train[idx])  # the mean over this rank's shard
        opt.zero_grad()
        loss.backward()  # the hook runs here, bucket by bucket
        opt.step()
        step_seconds.append(time.perf_counter() - t0)
        seen += len(idx)
        correct += int((logits.argmax(1) == y_train[idx]).sum())
        loss_sum += float(loss.detach()) * len(idx)
        if i == steps_per_epoch - 1 or t == total - 1:
            test_acc = accuracy(model, data)
            if rank == 0:
                print(
                    f"[{method}] epoch {epoch + 1:>2}/{args.epochs}  step {t + 1:>5}  "
                    f"loss {loss_sum / seen:.4f} (rank 0)  train {100 * correct / seen:5.1f}% (rank 0)  "
                    f"test {100 * test_acc:5.1f}%  {ratio_text(hook)}",
                    flush=True,
                )
    stats = hook.stats() if hook is not None else {}  # VGC: this rank's counters
    counts = torch.tensor(
        [stats.get(k, 0) for k in ("message_bytes", "dense_bytes", "sent", "elements")],
        dtype=torch.float64,
    )
    dist.all_reduce(counts)  # summed over the ranks
    message_bytes, dense_bytes, sent, elements = counts.tolist()
    timed = step_seconds[1:] or step_seconds  # the first step builds DDP's buckets: not timed
    return {
        "method": method,
        "steps": total,
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_accuracy": test_acc,
        "ratio": dense_bytes / message_bytes if message_bytes else float("nan"),
        "sent": sent / elements if elements else float("nan"),
        "bytes_per_step": message_bytes / (total * world) if message_bytes else float("nan"),
        "ms_per_step": 1e3 * float(np.mean(timed)),
        "wall": sum(step_seconds),
    }


def ratio_text(hook) -> str:
    """Rank 0's own compression counters so far (the summary sums all ranks)."""
    if hook is None or not hook.message_bytes:
        return ""
    stats = hook.stats()
    return f"ratio {stats['ratio']:6.1f}x  sent {100 * stats['sent_fraction']:6.2f}%"


def accuracy(model, data) -> float:
    import torch

    with torch.no_grad():
        logits = model(torch.from_numpy(data.x_test))
    return float((logits.argmax(1) == torch.from_numpy(data.y_test)).double().mean())


def parser() -> ArgumentParser:
    """The command line: --version, one-line errors with exit status 2, defaults in --help."""
    ap = ArgumentParser(
        prog="ddp_mnist1d.py",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ap.add_argument("--method", default="vgc", choices=["vgc", "hybrid", "strom", "none"], help="hook method")
    ap.add_argument(
        "--baseline", default="none", choices=["none", "ddp", "skip"], help="uncompressed run after"
    )
    ap.add_argument("--alpha", type=float, default=2.0, help="VGC's alpha (vgc, hybrid)")
    ap.add_argument("--zeta", type=float, default=0.999, help="VGC's zeta (vgc, hybrid)")
    ap.add_argument("--tau", type=float, default=0.01, help="threshold (strom, hybrid)")
    ap.add_argument("--variance", default="exact", choices=["exact", "approx"], help="conv variance form")
    ap.add_argument("--backend", default=None, help="vgc_ref backend (None: $VGC_BACKEND or numpy)")
    ap.add_argument("--warmup-steps", type=int, default=0, help="uncompressed allreduce steps first")
    ap.add_argument("--channels", type=int, nargs=3, default=[32, 32, 32], help="conv channels")
    ap.add_argument("--epochs", type=int, default=8, help="passes over the training set")
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps (None: all)")
    ap.add_argument("--batch", type=int, default=64, help="global mini-batch, split over the ranks")
    ap.add_argument("--lr", type=float, default=0.05, help="learning rate")
    ap.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    ap.add_argument("--weight-decay", type=float, default=1e-4, help="on weights, not biases")
    ap.add_argument("--seed", type=int, default=0, help="data order and initial parameters")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)

    import torch
    import torch.distributed as dist

    from mpi_demo.data import load_dataset

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = load_dataset("mnist1d", args.seed)
    methods = [args.method] + ([] if args.baseline == "skip" else [args.baseline])
    results = [train(args, m, data, rank, world) for m in methods]
    if rank == 0:
        first = results[0]
        print(
            f"summary: {world} ranks, {first['steps']} steps of {args.batch} samples, dataset mnist1d, "
            f"{first['parameters']} parameters ({4 * first['parameters']} bytes dense)"
        )
        header = ("method", "test acc", "ratio", "sent", "bytes/step", "ms/step", "wall")
        print("  {:<12} {:>8} {:>8} {:>8} {:>10} {:>8} {:>7}".format(*header))
        for r in results:
            acc = f"{100 * r['test_accuracy']:7.1f}%"
            if r["method"] == "ddp":  # DDP's allreduce: no messages counted
                ratio, sent, per_step = "-", "-", "-"
            else:
                ratio, sent, per_step = (
                    f"{r['ratio']:.1f}x",
                    f"{100 * r['sent']:.2f}%",
                    f"{r['bytes_per_step']:.0f}",
                )
            print(
                f"  {r['method']:<12} {acc:>8} {ratio:>8} {sent:>8} {per_step:>10} "
                f"{r['ms_per_step']:8.2f} {r['wall']:6.1f}s"
            )
        if len(results) == 2:
            a, b = results
            gap = 100 * (a["test_accuracy"] - b["test_accuracy"])
            ms = a["ms_per_step"] - b["ms_per_step"]
            print(
                f"  {a['method']} vs {b['method']}: test accuracy {gap:+.1f} points, {ms:+.2f} ms/step, "
                f"{a['ratio']:.1f}x fewer bytes sent than dense"
            )
    dist.barrier()  # every rank done with the process group before it goes
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
