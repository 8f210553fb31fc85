"""The demo's configuration: one frozen, validated container.

Fields fall in two groups. Those in :data:`ARITHMETIC_FIELDS` decide every number the run
computes; they are written into the trace header and the checkpoint, and a checkpoint
is only resumed by a run whose arithmetic fields are equal. The rest (backend, how the
workers run, output and files, fault injection) change nothing in the trace: the NumPy
and Numba backends give the same bytes, and so do MPI ranks and simulated workers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mpi_demo.data import DATASETS, MNIST1D, n_samples, n_test_samples
from mpi_demo.schedule import SCHEDULES

METHODS = ("none", "vgc", "strom", "hybrid", "topk")
RESIDUALS = ("feedback", "reset")
#: --products: the fixed-order primitives (portable traces) or NumPy/BLAS (machine-specific).
PRODUCTS = ("ordered", "blas")

ARITHMETIC_FIELDS = (
    "dataset",
    "samples",
    "features",
    "classes",
    "test_fraction",
    "hidden",
    "epochs",
    "steps",
    "batch",
    "lr",
    "momentum",
    "weight_decay",
    "method",
    "alpha",
    "zeta",
    "tau",
    "residual",
    "fraction",
    "seed",
    "checksum_every",
    "products",
)
#: Arithmetic fields added with the CNN: written into the trace header and checkpoint only
#: when they differ from their defaults, so that earlier traces and checkpoints stay valid.
EXTRA_ARITHMETIC_FIELDS = ("model", "channels", "variance", "validation", "lr_schedule")
MODELS = ("mlp", "cnn")
CONV_VARIANCES = ("exact", "approx")


class ConfigError(ValueError):
    """A configuration value is invalid; names the option and the value."""

    def __init__(self, option: str, value: object, reason: str) -> None:
        self.option = option
        self.value = value
        super().__init__(f"{option} {value!r}: {reason}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs. Defaults are the README's demo."""

    # data
    dataset: str = "synthetic"
    samples: int = 6000  # synthetic only
    features: int = 32  # synthetic only
    classes: int = 8  # synthetic only
    test_fraction: float = 0.2
    # model and optimizer
    hidden: tuple[int, ...] = (128, 64)
    model: str = "mlp"  # "cnn": mpi_demo/cnn.py (MNIST-1D's 1-D signals)
    channels: tuple[int, ...] = (32, 32, 32)  # the CNN's three convolutions
    variance: str = "exact"  # the CNN's convolution variance: "exact" or "approx"
    validation: int = 0  # training samples held out as a validation split (its tail)
    epochs: int = 8
    steps: int | None = None  # stop after this many steps (None: epochs * steps per epoch)
    batch: int = 64  # global mini-batch, split over the ranks
    lr: float = 0.05
    lr_schedule: str = "constant"  # "step" or "cosine": mpi_demo/schedule.py
    momentum: float = 0.9
    weight_decay: float = 1e-4
    # compression
    method: str = "vgc"
    alpha: float = 2.0
    zeta: float = 0.999
    tau: float = 0.0
    residual: str = "feedback"
    fraction: float = 0.01  # topk: share of each segment sent
    backend: str = "numpy"
    # products of steps 3-7 (docs/demo.md): "ordered" (portable) or "blas" (machine-specific)
    products: str = "ordered"
    seed: int = 0
    # how the workers run
    ranks: int | None = None  # simulated workers (None: MPI decides)
    # output and files
    trace: str | None = None
    checksum_every: int = 10
    log_every: int = 0  # also log every N steps (0: once per epoch)
    progress: bool = True
    checkpoint: str | None = None
    checkpoint_every: int = 0
    resume: str | None = None
    dump_inputs: str | None = None  # directory for every rank's g and s of the first steps
    dump_steps: int = 3  # steps written by dump_inputs
    # testing aid: raise on one rank at one step
    fail_at_step: int | None = None
    fail_rank: int = 0

    def arithmetic(self) -> dict[str, Any]:
        """The fields that fix the run's numbers, JSON-ready (for the trace and checkpoint)."""
        d = asdict(self)
        out = {k: d[k] for k in ARITHMETIC_FIELDS}
        out["hidden"] = list(self.hidden)
        defaults = TrainConfig()
        for k in EXTRA_ARITHMETIC_FIELDS:
            if getattr(self, k) != getattr(defaults, k):
                out[k] = list(d[k]) if isinstance(d[k], tuple) else d[k]
        for k in ("test_fraction", "lr", "momentum", "weight_decay", "alpha", "zeta", "tau", "fraction"):
            out[k] = float(out[k])
        return out

    def layer_sizes(self, n_features: int, n_classes: int) -> tuple[int, ...]:
        return (n_features, *self.hidden, n_classes)


def _positive_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, value, f"must be an integer >= {minimum}")


def _finite(
    name: str,
    value: object,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
    float32: bool = True,
) -> None:
    """``value`` is a finite number in the interval; with ``float32``, so is its float32 rounding.

    The run computes with the float32 value (model.py, vgc_ref.params): 1e39 would be
    infinite there, 1e-50 zero, so the range is checked on that value too.
    """

    def inside(x: float) -> bool:
        return (x > low if low_open else x >= low) and (x < high if high_open else x <= high)

    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and inside(value)):
        raise ConfigError(name, value, f"must be a finite number in {lo}{low}, {high}{hi}")
    if float32:
        with np.errstate(over="ignore"):
            x32 = float(np.float32(value))
        if not (math.isfinite(x32) and inside(x32)):
            raise ConfigError(
                name, value, f"is {x32!r} in float32, the run's precision; must be in {lo}{low}, {high}{hi}"
            )


def validate(config: TrainConfig) -> None:
    """Check every field on its own and against the others; raise ConfigError naming the first bad one.

    The checks that need the rank count (batch >= ranks, fail_rank < ranks) are also done
    here when ``ranks`` is known (simulation); under MPI, :func:`check_ranks` repeats them.
    """
    if config.dataset not in DATASETS:
        raise ConfigError("--dataset", config.dataset, f"must be one of {', '.join(DATASETS)}")
    _positive_int("--samples", config.samples, 2)
    _positive_int("--features", config.features)
    _positive_int("--classes", config.classes, 2)
    _finite("--test-fraction", config.test_fraction, 0.0, 1.0, low_open=True, high_open=True, float32=False)
    if not config.hidden:
        raise ConfigError("--hidden", config.hidden, "needs at least one hidden layer")
    for width in config.hidden:
        _positive_int("--hidden", width)
    _validate_model(config)
    _positive_int("--epochs", config.epochs)
    if config.steps is not None:
        _positive_int("--steps", config.steps)
    _positive_int("--batch", config.batch)
    _finite("--lr", config.lr, 0.0, math.inf, low_open=True, high_open=True)
    if config.lr_schedule not in SCHEDULES:
        raise ConfigError("--lr-schedule", config.lr_schedule, f"must be one of {', '.join(SCHEDULES)}")
    _finite("--momentum", config.momentum, 0.0, 1.0, high_open=True)
    _finite("--weight-decay", config.weight_decay, 0.0, math.inf, high_open=True)
    if config.method not in METHODS:
        raise ConfigError("--method", config.method, f"must be one of {', '.join(METHODS)}")
    if config.residual not in RESIDUALS:
        raise ConfigError("--residual", config.residual, f"must be one of {', '.join(RESIDUALS)}")
    if config.residual == "reset" and config.method in ("strom", "topk"):
        raise ConfigError(
            "--residual",
            config.residual,
            f"--method {config.method} always feeds its residual back (docs/algorithm.md sections 4 and 5)",
        )
    _finite("--alpha", config.alpha, 0.0, math.inf, low_open=True, high_open=True)
    _finite("--zeta", config.zeta, 0.0, 1.0)
    _finite("--tau", config.tau, 0.0, math.inf, high_open=True)
    _finite("--fraction", config.fraction, 0.0, 1.0, low_open=True, float32=False)
    if config.method == "vgc" and config.tau != 0:
        raise ConfigError("--tau", config.tau, "must be 0 for --method vgc (use --method hybrid for tau > 0)")
    if config.method == "topk" and config.tau != 0:
        raise ConfigError("--tau", config.tau, "must be 0 for --method topk")
    if config.method in ("strom", "hybrid") and not np.float32(config.tau) > 0:
        raise ConfigError(
            "--tau",
            config.tau,
            f"must be > 0 for --method {config.method} (and not round to 0 in float32); "
            "give one, e.g. --tau 0.01",
        )
    _positive_int("--seed", config.seed, 0)
    _positive_int("--checksum-every", config.checksum_every)
    _positive_int("--log-every", config.log_every, 0)
    _positive_int("--checkpoint-every", config.checkpoint_every, 0)
    if config.checkpoint_every and not config.checkpoint:
        raise ConfigError("--checkpoint-every", config.checkpoint_every, "needs --checkpoint PATH")
    if config.fail_at_step is not None:
        _positive_int("--fail-at-step", config.fail_at_step, 0)
    _positive_int("--fail-rank", config.fail_rank, 0)
    _positive_int("--dump-steps", config.dump_steps)
    if config.dump_inputs is not None:
        if config.method not in ("vgc", "strom", "hybrid"):
            raise ConfigError(
                "--dump-inputs", config.dump_inputs, "needs --method vgc, strom or hybrid (replayable steps)"
            )
        if config.resume is not None:
            raise ConfigError("--dump-inputs", config.dump_inputs, "dumps the first steps: not with --resume")
    check_backend(config.backend)
    if config.products not in PRODUCTS:
        raise ConfigError("--products", config.products, f"must be one of {', '.join(PRODUCTS)}")
    samples = n_samples(config.dataset, config.samples)
    n_test = n_test_samples(config.dataset, samples, config.test_fraction)
    if n_test < 1:
        raise ConfigError(
            "--test-fraction",
            config.test_fraction,
            f"leaves no test sample of the {samples} of {config.dataset} "
            f"(round({config.test_fraction} * {samples}) = 0); raise it or --samples",
        )
    n_train = samples - n_test - config.validation
    if n_train < config.batch:
        raise ConfigError(
            "--batch", config.batch, f"exceeds the {n_train} training samples of {config.dataset}"
        )
    if config.ranks is not None:
        _positive_int("--simulate-ranks", config.ranks)
        check_ranks(config, config.ranks)


def _validate_model(config: TrainConfig) -> None:
    """--model, --channels, --variance, --validation."""
    if config.model not in MODELS:
        raise ConfigError("--model", config.model, f"must be one of {', '.join(MODELS)}")
    if config.model == "cnn" and config.dataset not in MNIST1D:
        raise ConfigError("--model", config.model, "needs --dataset mnist1d or mnist1d-10k (1-D signals)")
    if len(config.channels) != 3:
        raise ConfigError("--channels", config.channels, "must name 3 channel counts")
    for c in config.channels:
        _positive_int("--channels", c)
    if config.variance not in CONV_VARIANCES:
        raise ConfigError("--variance", config.variance, f"must be one of {', '.join(CONV_VARIANCES)}")
    _positive_int("--validation", config.validation, 0)


def check_ranks(config: TrainConfig, ranks: int) -> None:
    """The checks that need P: every rank gets at least one sample; the fault rank exists."""
    if config.batch < ranks:
        raise ConfigError("--batch", config.batch, f"must be >= the number of ranks ({ranks})")
    if config.fail_at_step is not None and config.fail_rank >= ranks:
        raise ConfigError("--fail-rank", config.fail_rank, f"must be < the number of ranks ({ranks})")


def check_backend(name: str, option: str = "--backend") -> None:
    """The backend is registered and runs here; ``option`` is what the error names."""
    from vgc_ref.backends import backend_names, get_backend

    if name not in backend_names():
        raise ConfigError(option, name, f"must be one of {', '.join(backend_names())}")
    try:
        get_backend(name)
    except ImportError as err:
        raise ConfigError(option, name, f"cannot run here ({err})") from err
