"""Data-parallel momentum SGD with VGC and its baselines: the SPMD driver.

    mpiexec -n 4 python -m mpi4py -m mpi_demo train
    python -m mpi_demo train --simulate-ranks 4        # the same job in one process

One step, on every worker w of P (docs/algorithm.md section 7):

1. take rank w's contiguous slice of the global mini-batch (B_w samples);
2. forward and backward pass of the mean loss over those B_w samples; g per segment;
3. the variance term s per segment (vgc and hybrid only);
4. compress: update r and v, build the message (an empty packet is a valid message part);
5. allgather the P variable-length messages, decode them and add them in rank order,
   g_hat = sum / P;
6. the same momentum SGD update on every worker (:func:`mpi_demo.model.momentum_sgd`).

Rank 0 additionally writes the trace (:mod:`mpi_demo.trace`), the checkpoint
(:mod:`mpi_demo.checkpoint`) and every line of output.

:func:`run_training` is the whole run for one configuration; it takes a communicator
(:mod:`mpi_demo.comm`), so the same code runs as one MPI rank or as P simulated workers,
and it returns a :class:`TrainResult` for callers such as a hyperparameter sweep.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpi_demo import checkpoint as ckpt_mod
from mpi_demo import inputs as inputs_mod
from mpi_demo import model, network, schedule, trace
from mpi_demo.comm import SimulatedComm
from mpi_demo.config import TrainConfig, check_memory, check_ranks, dump_capped, validate
from mpi_demo.data import Dataset, epoch_order, hold_out, load_dataset, shard_bounds
from mpi_demo.network import Network
from vgc_ref import Compressor, SegmentState
from vgc_ref.backends import get_backend

PHASES = ("compute", "variance", "compress", "communicate")


class RankFailureError(RuntimeError):
    """An exception raised in one worker's part of a step; ``rank`` names the worker."""

    def __init__(self, rank: int, error: BaseException) -> None:
        self.rank = rank
        self.error = error
        super().__init__(f"rank {rank}: {type(error).__name__}: {error}")


class InjectedFaultError(RuntimeError):
    """The testing aid --fail-at-step: a deliberate error on one rank."""


class ReplicaDivergenceError(RuntimeError):
    """The ranks' parameters are no longer identical (they must be after every update)."""


@dataclass
class TrainResult:
    """What a run reports. Accuracies are None on ranks other than 0."""

    method: str
    ranks: int
    steps: int
    test_accuracy: float | None
    train_accuracy: float | None
    final_loss: float
    compression_ratio: float  # sum of dense bytes / sum of message bytes (docs/algorithm.md section 8)
    sent_fraction: float  # elements sent / elements, over all steps and ranks
    bytes_per_step: float  # mean message length of one rank in one step
    dense_bytes: int  # 4 * number of parameters
    wall_seconds: float
    time_per_step: dict[str, float]  # seconds, per phase (PHASES), of one worker-step
    history: list[dict[str, Any]] = field(default_factory=list)
    validation_accuracy: float | None = None  # with --validation N: on the held-out split
    params: list[np.ndarray] = field(default_factory=list)


@dataclass
class Counters:
    """Running totals; saved in the checkpoint so that a resumed run reports the same."""

    message_bytes: int = 0
    dense_bytes: int = 0
    sent: int = 0
    elements: int = 0
    steps: int = 0
    last_loss: float = float("nan")
    epoch_loss: float = 0.0  # sum of per-sample losses over the epoch so far
    epoch_correct: int = 0
    epoch_seen: int = 0


# --------------------------------------------------------------------------------------
# One worker's part of a step (steps 1-4): no communication
# --------------------------------------------------------------------------------------


@dataclass
class Worker:
    """One worker's data shard and compressor state."""

    rank: int
    shard: tuple[int, int]  # its [start, stop) of every global mini-batch
    compressor: Compressor


def local_step(
    worker: Worker,
    params: list[np.ndarray],
    net: Network,
    x: np.ndarray,
    y: np.ndarray,
    timers: dict[str, float],
    ops=None,
    keep: list | None = None,
) -> tuple[bytes, float, int]:
    """Steps 3-8 of docs/demo.md for one worker on its samples x (float32[B_w, F]), y (int64[B_w]).

    ``ops`` is the products namespace (:func:`mpi_demo.model.products`). Returns the
    message, the sum of the B_w per-sample losses (float64, in sample order) and the
    number of correctly classified samples. With ``keep`` (a list), (g, s) is appended to
    it (``--dump-inputs``).
    """
    t0 = time.perf_counter()
    loss, logits, grads, saved = net.gradients(params, x, y, ops)
    t1 = time.perf_counter()
    variances = net.variance_terms(saved, ops) if worker.compressor.uses_variance else None
    t2 = time.perf_counter()
    message = worker.compressor.message(grads, variances)
    t3 = time.perf_counter()
    if keep is not None:
        keep.append((grads, variances))
    timers["compute"] += t1 - t0
    timers["variance"] += t2 - t1
    timers["compress"] += t3 - t2
    correct = int((logits.argmax(axis=1) == y).sum())  # argmax: the first maximum
    return message, model.loss_sum(loss), correct


def accuracy(params: list[np.ndarray], net: Network, x: np.ndarray, y: np.ndarray, ops=None) -> float:
    """Fraction of rows of x classified as y (step 3's forward pass), correct / count in float64."""
    ops = ops if ops is not None else model.products()
    return int((net.predict(params, x, ops) == y).sum()) / x.shape[0]


def param_digest(params: list[np.ndarray]) -> str:
    return trace.sha256(b"".join(p.tobytes() for p in params))


# --------------------------------------------------------------------------------------
# Output helpers (rank 0)
# --------------------------------------------------------------------------------------


def progress_line(
    epoch: int,
    epochs: int,
    step: int,
    ranks: int,
    c: Counters,
    test_acc: float | None,
    per_step: dict[str, float],
) -> str:
    """One line of rank 0's log.

    The mean loss and train accuracy of the epoch so far, the test accuracy (at the end of
    an epoch), the compression ratio, fraction of elements sent and message bytes per
    rank and step since the start, and the mean time of one worker-step per phase.
    """
    ratio = c.dense_bytes / c.message_bytes if c.message_bytes else float("nan")
    train = f"{100 * c.epoch_correct / c.epoch_seen:5.1f}%" if c.epoch_seen else "    -"
    test = f"{100 * test_acc:5.1f}%" if test_acc is not None else "    -"
    ms = " ".join(f"{p} {1e3 * per_step[p]:.2f}" for p in PHASES)
    bytes_per_step = c.message_bytes / max(c.steps * ranks, 1)
    loss = c.epoch_loss / c.epoch_seen if c.epoch_seen else float("nan")
    return (
        f"epoch {epoch + 1:>2}/{epochs}  step {step:>5}  loss {loss:.4f}  train {train}  "
        f"test {test}  ratio {ratio:6.1f}x  sent {100 * c.sent / max(c.elements, 1):6.2f}%  "
        f"bytes/step {bytes_per_step:7.0f}  ms/step: {ms}"
    )


class Progress:
    """A one-line progress indicator on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0

    def update(self, text: str) -> None:
        now = time.monotonic()
        if self.enabled and now - self._last > 0.2:
            self._last = now
            sys.stderr.write("\r" + text + "\x1b[K")
            sys.stderr.flush()

    def clear(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


# --------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------


def run_training(config: TrainConfig, comm=None, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train one configuration on ``comm`` (default: ``config.ranks`` simulated workers).

    Every process of an MPI job calls this with its :class:`~mpi_demo.comm.MPIComm`;
    ``log`` receives rank 0's output lines (None: silent). Raises :class:`RankFailureError`
    when one worker's part of a step fails, ConfigError or CheckpointError (on every rank
    alike) for a configuration or checkpoint this job cannot use.
    """
    validate(config)
    config = dump_capped(config)  # --dump-inputs: the run ends after the dumped steps
    if comm is None:
        comm = SimulatedComm(config.ranks or 1)
    check_ranks(config, comm.size)
    check_memory(config, len(comm.local_ranks), comm.size)  # before anything is allocated
    root = comm.is_root
    say = log if (log is not None and root) else None

    data = load_dataset(
        config.dataset, config.seed, config.samples, config.features, config.classes, config.test_fraction
    )
    x_val = y_val = None
    if config.validation:
        data, x_val, y_val = hold_out(data, config.validation)
    net = network.build(config, data.n_features, data.n_classes)
    layout = list(net.layout)
    seg_sizes = net.seg_sizes
    decay = net.decay
    n_params = sum(seg_sizes)
    dense_bytes = 4 * n_params

    params = net.init_params(config.seed)
    momentum = [np.zeros_like(p) for p in params]
    shards = shard_bounds(config.batch, comm.size)
    workers = [
        Worker(
            w,
            shards[w],
            Compressor(
                seg_sizes,
                config.method,
                alpha=config.alpha,
                zeta=config.zeta,
                tau=config.tau,
                residual=config.residual,
                fraction=config.fraction,
                backend=config.backend,
            ),
        )
        for w in comm.local_ranks
    ]
    backend = get_backend(config.backend)
    ops = model.products(config.products)
    mu, wd = np.float32(config.momentum), np.float32(config.weight_decay)

    n_train = data.x_train.shape[0]
    steps_per_epoch = n_train // config.batch  # the last partial batch of an epoch is dropped
    total = planned = config.epochs * steps_per_epoch  # the schedule runs over the planned steps
    if config.steps is not None:
        total = min(total, config.steps)
    arith = config.arithmetic()

    counters = Counters()
    start = 0
    order_epoch, order = -1, np.empty(0, np.int64)
    prefix: list[str] = []
    if config.resume:
        facts = ckpt_mod.RunFacts(
            header=trace.dumps(trace.header_record(arith, comm.size, layout, total)),
            ranks=comm.size,
            steps_per_epoch=steps_per_epoch,
            total=total,
            batch=config.batch,
            checksum_every=config.checksum_every,
            n_params=n_params,
            method=config.method,
            residual=config.residual,
            order_of=lambda e: epoch_order(config.seed, e, n_train),
            initial=lambda: net.init_params(config.seed),
            # --products blas: the accuracy of this machine's BLAS, maybe not the writer's
            test_accuracy=(
                None
                if config.products == "blas"
                else (lambda p: accuracy(p, net, data.x_test, data.y_test, ops))
            ),
        )
        restored = _resume(config, comm, arith, seg_sizes, total, n_train, facts)
        start = restored.step
        params = [p.copy() for p in restored.params]
        momentum = [m.copy() for m in restored.momentum]
        for wk in workers:  # load_states: host or device states (numba-cuda keeps them on the GPU)
            wk.compressor.load_states(
                [
                    SegmentState(st.segment_id, r.copy(), v.copy())
                    for st, r, v in zip(wk.compressor.states, restored.r[wk.rank], restored.v[wk.rank])
                ]
            )
        order_epoch, order = restored.epoch, restored.order
        counters = Counters(**restored.counters)
        prefix = restored.trace_lines
        if say:
            say(f"resumed from {config.resume} after step {start} of {total}")

    writer = trace.TraceWriter(config.trace, prefix) if root else None
    dump_steps = min(config.dump_steps, total) if config.dump_inputs is not None else 0
    dump = None
    if root and dump_steps:
        dump = inputs_mod.InputDump(
            config.dump_inputs,
            config.method,
            inputs_mod.hyperparameters(config.method, config.alpha, config.zeta, config.tau, config.residual),
            layout,
            comm.size,
            dump_steps,
        )
    if writer is not None and start == 0:
        writer.write(trace.header_record(arith, comm.size, layout, total))

    if say:
        label = _method_label(config)
        say(
            f"training {label} on {data.name} ({n_train} train / {data.x_test.shape[0]} test samples, "
            f"{data.n_classes} classes), {net.describe()}, {comm.size} ranks x {config.batch // comm.size}"
            f"{'+' if config.batch % comm.size else ''} samples, {total} steps, "
            f"backend {config.backend}, products {config.products}"
        )

    timers = dict.fromkeys(PHASES, 0.0)
    progress = Progress(config.progress and say is not None)
    history: list[dict[str, Any]] = []
    test_acc: float | None = None
    t_start = time.perf_counter()
    for t in range(start, total):
        epoch, i = divmod(t, steps_per_epoch)
        if epoch != order_epoch:
            order_epoch, order = epoch, epoch_order(config.seed, epoch, n_train)
        if i == 0:
            counters.epoch_loss, counters.epoch_correct, counters.epoch_seen = 0.0, 0, 0
        batch = order[i * config.batch : (i + 1) * config.batch]

        # Steps 1-4, each local worker on its own shard.
        local = []
        kept: list | None = [] if t < dump_steps else None
        for wk in workers:
            try:
                if config.fail_at_step == t and config.fail_rank == wk.rank:
                    raise InjectedFaultError(f"injected fault at step {t} (--fail-at-step)")
                idx = batch[wk.shard[0] : wk.shard[1]]
                local.append(
                    local_step(wk, params, net, data.x_train[idx], data.y_train[idx], timers, ops, kept)
                )
            except Exception as err:
                raise RankFailureError(wk.rank, err) from err

        # Steps 5-6: exchange, rank-ordered mean, the same update everywhere.
        t0 = time.perf_counter()
        gathered = comm.allgather(local)
        messages = [m for m, _, _ in gathered]
        g_hat = backend.decode_accumulate(messages, seg_sizes)
        timers["communicate"] += time.perf_counter() - t0
        if kept is not None:  # --dump-inputs: rank 0 writes every rank's g, s and message
            entries = comm.gather([(wk.rank, g, s, m[0]) for wk, (g, s), m in zip(workers, kept, local)])
            if dump is not None:
                dump.write_step(t, entries)
        t1 = time.perf_counter()
        lr = schedule.lr_at(config.lr, config.lr_schedule, t, planned)
        model.momentum_sgd(params, momentum, g_hat, decay, lr, mu, wd)
        timers["compute"] += (time.perf_counter() - t1) * len(workers)

        loss_sum = 0.0
        for _, s, _ in gathered:  # rank order
            loss_sum += s
        counters.last_loss = loss_sum / config.batch
        counters.epoch_loss += loss_sum
        counters.epoch_correct += sum(c for _, _, c in gathered)
        counters.epoch_seen += config.batch
        counters.steps += 1
        counters.message_bytes += sum(len(m) for m in messages)
        counters.dense_bytes += dense_bytes * comm.size
        counters.elements += n_params * comm.size
        counters.sent += sum(count for m in messages for _, _, count in trace.segment_spans(m))
        if writer is not None:
            writer.write(trace.step_record(t, epoch, counters.last_loss, messages))

        if (t + 1) % config.checksum_every == 0:
            digests = comm.allgather([param_digest(params)] * len(workers))
            if len(set(digests)) != 1:
                bad = next(w for w, d in enumerate(digests) if d != digests[0])
                raise ReplicaDivergenceError(f"after step {t}: rank {bad}'s parameters differ from rank 0's")
            if writer is not None:
                writer.write(trace.params_record(t, params))

        if t == start and total - start > 1:
            timers = dict.fromkeys(PHASES, 0.0)  # the first step pays for JIT compilation: not timed
        end_of_epoch = i == steps_per_epoch - 1 or t == total - 1
        per_step = _per_step(timers, t - start, total - start, len(workers))
        if root and end_of_epoch:
            test_acc = accuracy(params, net, data.x_test, data.y_test, ops)
            train_acc = counters.epoch_correct / counters.epoch_seen
            history.append(
                {
                    "epoch": epoch,
                    "step": t,
                    "loss": counters.epoch_loss / counters.epoch_seen,
                    "train_accuracy": train_acc,
                    "test_accuracy": test_acc,
                    # with --validation N: the held-out split after every epoch (the sweep's
                    # convergence curve; the trace does not carry it)
                    "validation_accuracy": (
                        accuracy(params, net, x_val, y_val, ops) if x_val is not None else None
                    ),
                }
            )
            writer.write(trace.eval_record(epoch, t, train_acc, test_acc))
        if say:
            if end_of_epoch or (config.log_every and (t + 1) % config.log_every == 0):
                progress.clear()
                say(
                    progress_line(
                        epoch,
                        config.epochs,
                        t + 1,
                        comm.size,
                        counters,
                        test_acc if end_of_epoch else None,
                        per_step,
                    )
                )
            else:
                progress.update(f"epoch {epoch + 1}/{config.epochs}  step {t + 1}/{total}")

        if config.checkpoint_every and (t + 1) % config.checkpoint_every == 0:
            _save_checkpoint(
                config, comm, workers, arith, t + 1, order_epoch, order, params, momentum, counters, writer
            )

    wall = time.perf_counter() - t_start
    if writer is not None:
        writer.write(trace.final_record(total, params))
        writer.close()
    progress.clear()
    per_step = _per_step(timers, total - start - 1, total - start, len(workers))
    return TrainResult(
        method=config.method,
        ranks=comm.size,
        steps=total,
        test_accuracy=accuracy(params, net, data.x_test, data.y_test, ops) if root else None,
        validation_accuracy=accuracy(params, net, x_val, y_val, ops) if root and x_val is not None else None,
        train_accuracy=history[-1]["train_accuracy"] if history else None,
        final_loss=counters.last_loss,
        compression_ratio=counters.dense_bytes / counters.message_bytes
        if counters.message_bytes
        else float("nan"),
        sent_fraction=counters.sent / counters.elements if counters.elements else float("nan"),
        bytes_per_step=counters.message_bytes / (counters.steps * comm.size)
        if counters.steps
        else float("nan"),
        dense_bytes=dense_bytes,
        wall_seconds=wall,
        time_per_step=per_step,
        history=history,
        params=params,
    )


def _per_step(timers: dict[str, float], index: int, n_steps: int, n_workers: int) -> dict[str, float]:
    """Mean seconds per worker-step by phase after step ``index`` (0-based) of ``n_steps``.

    The first step is left out when there is more than one: it includes JIT compilation.
    """
    timed = index if n_steps > 1 else 1
    if timed <= 0:
        return dict.fromkeys(PHASES, float("nan"))
    return {p: timers[p] / (timed * (1 if p == "communicate" else n_workers)) for p in PHASES}


def _method_label(config: TrainConfig) -> str:
    if config.method == "vgc":
        return f"vgc (alpha={config.alpha:g}, zeta={config.zeta:g})"
    if config.method == "strom":
        return f"strom (tau={config.tau:g})"
    if config.method == "hybrid":
        return f"hybrid (alpha={config.alpha:g}, zeta={config.zeta:g}, tau={config.tau:g})"
    if config.method == "topk":
        return f"topk (fraction={config.fraction:g})"
    return "none (dense float32)"


def _resume(
    config: TrainConfig,
    comm,
    arith: dict[str, Any],
    seg_sizes: list[int],
    total: int,
    n_train: int,
    facts: ckpt_mod.RunFacts,
) -> ckpt_mod.Checkpoint:
    """Rank 0 reads and checks the checkpoint and sends it to every rank; all raise alike on a bad one.

    The checks: the file (:func:`~mpi_demo.checkpoint.load`), that it is this job's
    (:func:`~mpi_demo.checkpoint.check_compatible`) and that its parts agree with each
    other and with the trace it carries (:func:`~mpi_demo.checkpoint.check_consistent`).
    """
    payload: ckpt_mod.Checkpoint | str
    if comm.is_root:
        try:
            payload = ckpt_mod.load(config.resume)
            ckpt_mod.check_compatible(payload, arith, comm.size, seg_sizes, config.resume, total, n_train)
            ckpt_mod.check_consistent(payload, facts, config.resume)
        except ckpt_mod.CheckpointError as err:
            payload = str(err)
    else:
        payload = ""
    payload = comm.bcast(payload)
    if isinstance(payload, str):
        raise ckpt_mod.CheckpointError(payload)
    return payload


def _save_checkpoint(
    config, comm, workers, arith, step, order_epoch, order, params, momentum, counters, writer
):
    """Gather every rank's r and v on rank 0 and write the checkpoint there."""
    states = comm.gather(
        [
            (
                wk.rank,
                [st.r for st in wk.compressor.host_states()],
                [st.v for st in wk.compressor.host_states()],
            )
            for wk in workers
        ]
    )
    if not comm.is_root:
        return
    states = sorted(states, key=lambda s: s[0])
    ckpt_mod.save(
        config.checkpoint,
        ckpt_mod.Checkpoint(
            config=arith,
            ranks=comm.size,
            step=step,
            epoch=order_epoch,
            order=order,
            params=params,
            momentum=momentum,
            r=[s[1] for s in states],
            v=[s[2] for s in states],
            counters=dict(vars(counters)),
            trace_lines=list(writer.lines),
        ),
    )


__all__ = ["Dataset", "RankFailureError", "TrainConfig", "TrainResult", "run_training"]
