"""Command line of the demo: ``train``, ``compare`` and ``sweep``.

    mpiexec -n 4 python -m mpi4py -m mpi_demo train [options]
    python -m mpi_demo train --simulate-ranks 4 [options]
    python -m mpi_demo compare TRACE_A TRACE_B
    python -m mpi_demo sweep [--quick]          # docs/results.md, see mpi_demo.sweep

Every argument is checked before MPI is initialised (mpi4py initialises MPI when
``mpi4py.MPI`` is first imported, which happens only in :class:`mpi_demo.comm.MPIComm`),
so a bad argument costs no MPI start-up and leaves no rank waiting for another.

Exit status: 0 success (``compare``: identical), 1 a run failed (``compare``: the traces
differ), 2 a bad argument or an unusable trace or checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
from collections.abc import Sequence

from mpi_demo.config import (
    CONV_VARIANCES,
    METHODS,
    MODELS,
    PRODUCTS,
    RESIDUALS,
    ConfigError,
    TrainConfig,
    check_backend,
    check_memory,
    dump_capped,
    validate,
)
from mpi_demo.data import DATASETS
from mpi_demo.schedule import SCHEDULES
from vgc_ref._cli import (
    ArgumentParser,
    input_file_problem,
    output_dir_problem,
    output_file_problem,
    same_path,
    say_error,
    usage_error,
)
from vgc_ref.backends import ENV_VAR as BACKEND_ENV_VAR

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    return widths


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each default once: added to a help text that does not state its own, and not for
    options whose default is "not given" (None) or a switch (False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False:
            return text
        if isinstance(action.default, tuple):  # --hidden, --channels: as they are typed
            return f"{text} (default: {','.join(map(str, action.default))})"
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    parser = ArgumentParser(
        prog="python -m mpi_demo",
        description="Train a small NumPy MLP or 1-D CNN across MPI ranks with VGC and its baselines.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train (under mpiexec, or with --simulate-ranks P in one process)",
        description="Data-parallel momentum SGD of a small MLP or 1-D CNN; every rank compresses its "
        "gradient. Every option is checked before training (and before MPI) starts.",
        formatter_class=_HelpFormatter,
    )
    g = t.add_argument_group("data")
    g.add_argument(
        "--dataset",
        choices=DATASETS,
        default=d.dataset,
        help="synthetic (from --seed), digits (scikit-learn) or MNIST-1D (mpi_demo/mnist1d.npz)",
    )
    g.add_argument("--samples", type=int, default=d.samples, help="synthetic samples (train + test)")
    g.add_argument("--features", type=int, default=d.features, help="synthetic features")
    g.add_argument("--classes", type=int, default=d.classes, help="synthetic classes")
    g.add_argument(
        "--test-fraction",
        type=float,
        default=d.test_fraction,
        help="share held out for testing (not mnist1d)",
    )
    g = t.add_argument_group("model and optimizer")
    g.add_argument("--hidden", type=_hidden, default=d.hidden, help="hidden layer widths, e.g. 128,64")
    g.add_argument(
        "--model", choices=MODELS, default=d.model, help="cnn: needs --dataset mnist1d or mnist1d-10k"
    )
    g.add_argument("--channels", type=_hidden, default=d.channels, help="cnn: the 3 convolutions' channels")
    g.add_argument(
        "--variance", choices=CONV_VARIANCES, default=d.variance, help="cnn: convolution variance form"
    )
    g.add_argument(
        "--validation", type=int, default=d.validation, metavar="N", help="hold out N training samples"
    )
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training split")
    g.add_argument(
        "--steps",
        type=int,
        default=d.steps,
        help="stop after this many steps (default: every step of --epochs)",
    )
    g.add_argument("--batch", type=int, default=d.batch, help="global mini-batch, split over the ranks")
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    g.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        default=d.lr_schedule,
        help="learning rate per step: constant, step (x0.1 at 1/2 and 3/4 of the steps) or cosine",
    )
    g.add_argument("--momentum", type=float, default=d.momentum, help="momentum of SGD, in [0, 1)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="on weights, not biases")
    g.add_argument(
        "--seed", type=int, default=d.seed, help="fixes the data, initial parameters and sample orders"
    )
    g.add_argument(
        "--products",
        choices=PRODUCTS,
        default=d.products,
        help="matrix products, sums, exp and log: ordered (fixed order, the same trace on every "
        "machine) or blas (NumPy/BLAS; faster on large layers, traces machine-specific)",
    )
    g = t.add_argument_group("compression")
    g.add_argument(
        "--method", choices=METHODS, default=d.method, help="compression (none: dense float32 messages)"
    )
    g.add_argument("--alpha", type=float, default=d.alpha, help="vgc, hybrid")
    g.add_argument("--zeta", type=float, default=d.zeta, help="vgc, hybrid")
    g.add_argument("--tau", type=float, default=d.tau, help="strom, hybrid (> 0 there; 0 for vgc)")
    g.add_argument(
        "--residual",
        choices=RESIDUALS,
        default=d.residual,
        help="vgc, hybrid: a sent element's residual r - q (feedback) or 0 (reset)",
    )
    g.add_argument("--fraction", type=float, default=d.fraction, help="topk: share of each segment sent")
    g.add_argument(
        "--backend",
        default=None,
        help=f"vgc_ref backend: numpy, numba-cpu, ... (default: ${BACKEND_ENV_VAR}, else {d.backend})",
    )
    g.add_argument(
        "--compare",
        choices=("none",),
        default=None,
        help="also train the uncompressed baseline with the same seed and print both",
    )
    g = t.add_argument_group("workers")
    g.add_argument(
        "--simulate-ranks",
        type=int,
        default=None,
        metavar="P",
        help="run P workers in this process without MPI (an oracle for mpiexec -n P)",
    )
    g = t.add_argument_group("output and files")
    g.add_argument("--trace", default=None, metavar="PATH", help="write the trace (docs/trace.md)")
    g.add_argument(
        "--checksum-every",
        type=int,
        default=d.checksum_every,
        metavar="N",
        help="parameter digests in the trace every N steps",
    )
    g.add_argument(
        "--log-every",
        type=int,
        default=d.log_every,
        metavar="N",
        help="also print a line every N steps (0: once per epoch)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress line on a terminal")
    g.add_argument(
        "--checkpoint", default=None, metavar="PATH", help="write a checkpoint (with --checkpoint-every N)"
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        metavar="N",
        help="save --checkpoint after every N-th step (0: never)",
    )
    g.add_argument("--resume", default=None, metavar="PATH", help="continue from a checkpoint")
    g.add_argument(
        "--dump-inputs",
        default=None,
        metavar="DIR",
        help="write every rank's g, s and message of the first --dump-steps steps into DIR (created "
        "if missing) for python -m vgc_ref.conformance --replay DIR; the run ends after those steps",
    )
    g.add_argument(
        "--dump-steps",
        type=int,
        default=d.dump_steps,
        metavar="N",
        help="steps --dump-inputs writes; the run ends after them",
    )
    # Testing aid (docs/demo.md): raise on one rank at one step to exercise the abort path.
    g.add_argument("--fail-at-step", type=int, default=None, help=argparse.SUPPRESS)
    g.add_argument("--fail-rank", type=int, default=0, help=argparse.SUPPRESS)

    c = sub.add_parser(
        "compare",
        help="compare two traces",
        description="Say whether two traces are "
        "identical, or name the first step, rank and segment where they differ.",
    )
    c.add_argument("trace_a")
    c.add_argument("trace_b")

    from mpi_demo import sweep

    s = sub.add_parser(
        "sweep",
        help="compression ratio against accuracy over a grid of methods (docs/results.md)",
        description="Train every configuration of the grid with 4 ranks; write the results table and plot.",
    )
    sweep.add_arguments(s)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        dataset=args.dataset,
        samples=args.samples,
        features=args.features,
        classes=args.classes,
        test_fraction=args.test_fraction,
        hidden=tuple(args.hidden),
        model=args.model,
        channels=tuple(args.channels),
        variance=args.variance,
        validation=args.validation,
        epochs=args.epochs,
        steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        method=args.method,
        alpha=args.alpha,
        zeta=args.zeta,
        tau=args.tau,
        residual=args.residual,
        fraction=args.fraction,
        backend=args.backend if args.backend is not None else os.environ.get(BACKEND_ENV_VAR) or "numpy",
        seed=args.seed,
        products=args.products,
        ranks=args.simulate_ranks,
        trace=args.trace,
        checksum_every=args.checksum_every,
        log_every=args.log_every,
        progress=not args.no_progress,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        dump_inputs=args.dump_inputs,
        dump_steps=args.dump_steps,
        fail_at_step=args.fail_at_step,
        fail_rank=args.fail_rank,
    )


#: The output options of ``train``: option, TrainConfig field, and the check of its path.
OUTPUTS = (
    ("--trace", "trace", output_file_problem),
    ("--checkpoint", "checkpoint", output_file_problem),
    ("--dump-inputs", "dump_inputs", output_dir_problem),
)


def check_outputs(config: TrainConfig) -> None:
    """Every output path is proven writable (a probe file is created and removed) and no two
    outputs, nor the trace and the checkpoint resumed from, name the same file."""
    named = []
    for option, name, problem_of in OUTPUTS:
        path = getattr(config, name)
        if path is not None:
            problem = problem_of(path)
            if problem:
                raise ConfigError(option, path, problem)
            named.append((option, path))
    for i, (first, path_a) in enumerate(named):
        for option, path in named[i + 1 :]:
            if same_path(path_a, path):
                raise ConfigError(option, path, f"is the {first} path too; give two paths")
    if config.dump_inputs is not None:
        from mpi_demo.inputs import is_dump_file

        for option, path in named:
            if option != "--dump-inputs" and is_dump_file(config.dump_inputs, path):
                raise ConfigError(option, path, "is a file that --dump-inputs writes; give another path")
    if config.resume is not None and config.trace is not None and same_path(config.resume, config.trace):
        raise ConfigError("--trace", config.trace, "is the --resume checkpoint; writing it would destroy it")


def check_files(config: TrainConfig, compare: str | None) -> None:
    """The checks on paths and optional dependencies, before MPI starts."""
    check_outputs(config)
    if config.resume is not None:
        problem = input_file_problem(config.resume)
        if problem is None and not os.path.isfile(config.resume):
            problem = "is not a regular file (a device or a pipe never ends); give a checkpoint file"
        if problem:
            raise ConfigError("--resume", config.resume, problem)
    if config.dataset == "digits" and importlib.util.find_spec("sklearn") is None:
        raise ConfigError(
            "--dataset",
            "digits",
            "needs scikit-learn, an optional dependency: pip install scikit-learn "
            "(or pip install -e '.[digits]')",
        )
    if compare is not None and config.method == "none":
        raise ConfigError("--compare", compare, "needs a compressing --method (vgc, strom, hybrid or topk)")


def baseline_of(config: TrainConfig) -> TrainConfig:
    """The uncompressed run --compare none adds: same data, model, seed and optimizer; no files."""
    return dataclasses.replace(
        config,
        method="none",
        tau=0.0,
        trace=None,
        checkpoint=None,
        checkpoint_every=0,
        resume=None,
        dump_inputs=None,
        fail_at_step=None,
    )


def _summary(results, config: TrainConfig) -> list[str]:
    from mpi_demo.train import _method_label

    first = results[0][1]
    lines = [
        f"summary: {first.ranks} ranks, {first.steps} steps of {config.batch} samples, "
        f"dataset {config.dataset}, {first.dense_bytes // 4} parameters ({first.dense_bytes} bytes dense)",
        f"  {'method':<40} {'test acc':>8} {'ratio':>8} {'sent':>8} {'bytes/step':>10}  "
        f"{'ms/step: compute variance compress comm':>40} {'wall':>7}",
    ]
    for cfg, r in results:
        ms = " ".join(
            f"{1e3 * r.time_per_step[p]:.2f}" for p in ("compute", "variance", "compress", "communicate")
        )
        lines.append(
            f"  {_method_label(cfg):<40} {100 * r.test_accuracy:7.1f}% {r.compression_ratio:7.1f}x "
            f"{100 * r.sent_fraction:7.2f}% {r.bytes_per_step:10.0f}  {ms:>40} {r.wall_seconds:6.1f}s"
        )
    if len(results) == 2:
        a, b = results[0][1], results[1][1]
        gap = 100 * (a.test_accuracy - b.test_accuracy)
        lines.append(
            f"  {results[0][0].method} vs none: test accuracy {gap:+.1f} points, "
            f"{a.compression_ratio:.1f}x fewer bytes sent"
        )
    return lines


def _launch_size() -> int | None:
    """The job's number of ranks from the launcher's environment (None outside one), without MPI."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def _train(args: argparse.Namespace, prog: str) -> int:
    config = config_from_args(args)
    try:
        if args.backend is None and os.environ.get(BACKEND_ENV_VAR):
            check_backend(config.backend, f"${BACKEND_ENV_VAR}")  # name the variable, not --backend
        validate(config)
        config = dump_capped(config)  # --dump-inputs: the run ends after the dumped steps
    except ConfigError as err:
        usage_error(prog, str(err))  # one line, once per job, exit 2; MPI has not been touched
    try:
        check_files(config, args.compare)
        # Under MPI each process holds one worker; a host's memory is shared by its ranks.
        check_memory(config, config.ranks or 1, config.ranks or _launch_size() or 1)
    except ConfigError as err:  # paths and memory differ between hosts: each host's first rank reports
        usage_error(prog, str(err), per_host=True)

    from mpi_demo.checkpoint import CheckpointError
    from mpi_demo.comm import MPIComm, SimulatedComm
    from mpi_demo.data import DatasetUnavailableError
    from mpi_demo.train import RankFailureError, run_training

    if config.ranks is not None:
        comm = SimulatedComm(config.ranks)
    else:
        try:
            comm = MPIComm()
        except ImportError as err:
            say_error(
                prog,
                f"mpi4py is not installed ({err}); run under mpiexec after "
                "pip install -e '.[mpi]', or use --simulate-ranks P",
            )
            return EXIT_USAGE

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        runs = [config] + ([baseline_of(config)] if args.compare else [])
        results = []
        for cfg in runs:
            results.append((cfg, run_training(cfg, comm, log=log)))
        if comm.is_root:
            for line in _summary(results, config):
                log(line)
        return EXIT_OK
    except (ConfigError, CheckpointError, DatasetUnavailableError) as err:
        # Raised alike on every rank (after a broadcast where needed): no abort needed.
        if comm.is_root:
            print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except RankFailureError as err:
        print(f"rank {err.rank}: {type(err.error).__name__}: {err.error}", file=sys.stderr, flush=True)
        comm.abort(EXIT_FAILED)
        return EXIT_FAILED
    except Exception as err:
        print(f"rank {comm.rank}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        comm.abort(EXIT_FAILED)
        return EXIT_FAILED


def _compare(args: argparse.Namespace) -> int:
    from mpi_demo.trace import TraceError, compare_files

    try:
        same, report = compare_files(args.trace_a, args.trace_b)
    except (OSError, TraceError) as err:
        print(f"python -m mpi_demo compare: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyError, TypeError, IndexError, AttributeError) as err:  # a header without its fields
        print(
            f"python -m mpi_demo compare: error: {args.trace_a} or {args.trace_b}: malformed trace record "
            f"({type(err).__name__}: {err})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(report)
    return EXIT_OK if same else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "compare":
        return _compare(args)
    if args.command == "sweep":
        from mpi_demo import sweep

        return sweep.run_cli(args, list(argv) if argv is not None else None)
    return _train(args, f"{parser.prog} train")
