"""The demo's configuration: one frozen, validated container.

Fields fall in two groups. Those in :data:`ARITHMETIC_FIELDS` decide every number the run
computes; they are written into the trace header and the checkpoint, and a checkpoint
is only resumed by a run whose arithmetic fields are equal. The rest (backend, how the
workers run, output and files, fault injection) change nothing in the trace: the NumPy
and Numba backends give the same bytes, and so do MPI ranks and simulated workers.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from mpi_demo.data import DATASETS, MNIST1D, n_samples, n_test_samples
from mpi_demo.rng import DRAW_CHUNK
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


def dump_capped(config: TrainConfig) -> TrainConfig:
    """With --dump-inputs the run ends after the dumped steps: as if given ``--steps`` min(steps, N).

    The dump is the run's only product that needs those steps; the rest of a full run
    would be spent for nothing. The run is then exactly the run of ``--steps N``, so its
    trace and checkpoint (when asked for too) are that run's.
    """
    if config.dump_inputs is None:
        return config
    cap = config.dump_steps if config.steps is None else min(config.steps, config.dump_steps)
    return replace(config, steps=cap)


# --------------------------------------------------------------------------------------
# Memory: estimated from the configuration before anything is allocated
# --------------------------------------------------------------------------------------

#: The memory a run may plan to use where /proc/meminfo has no MemAvailable (not Linux).
FALLBACK_MEMORY_LIMIT = 8 * 2**30
#: Launcher variables that give the number of ranks on this host (MPICH/Hydra, Open MPI).
LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")
#: Peak bytes of building the synthetic task, per sample and feature and per sample, and of
#: drawing the initial weights, per element drawn at a time (float64 arrays and the
#: generator's twelve uniforms per normal; measured with tracemalloc).
SYNTHETIC_BYTES_PER_VALUE, SYNTHETIC_BYTES_PER_SAMPLE, INIT_BYTES_PER_WEIGHT = 416, 800, 400
#: Peak bytes of one compressor step, per element of the largest segment (the NumPy
#: reference's temporaries: about ten float32 arrays of the segment's length).
COMPRESS_BYTES_PER_ELEMENT = 40


def _data_shape(config: TrainConfig) -> tuple[int, int]:
    """Features and classes of the configuration's data set, without loading it."""
    if config.dataset in MNIST1D:
        return 40, 10  # mpi_demo/mnist1d.py LENGTH, CLASSES
    if config.dataset == "digits":
        return 64, 10  # 8x8 pixels, 10 digits
    return config.features, config.classes


def memory_estimate(config: TrainConfig, workers: int, ranks: int) -> dict[str, int]:
    """Bytes one process of this run needs, by part, from the configuration alone.

    ``workers`` is the number of workers in this process (P simulated, 1 under MPI),
    ``ranks`` P; n parameters, n_max the largest segment, B_w the largest shard, float32 =
    4 bytes. Held for the whole run:

    * ``parameters``: parameters, momentum, the decoded mean g_hat and the P messages of a
      step (at most 4 n bytes each, the dense codec): 4 n (3 + P);
    * ``compressor state``: r and v of every local worker, 8 n each;
    * ``data``: the data set's float32 inputs and labels.

    Needed for a while, one at a time (the estimate adds only the largest, and names it):

    * ``building the data``: synthetic, 416 bytes per value and 800 per sample;
    * ``initialisation``: drawing the weights: the largest segment (4 n_max) and 400
      bytes per element of one chunk of the draw (mpi_demo.rng.DRAW_CHUNK);
    * ``one step``: g and s (8 n), the compressor's temporaries (40 n_max) and three copies
      (input, delta, square) of one shard's activations;
    * ``test forward pass``: the activations of the test (or validation) split;
    * ``checkpoint``: its bytes and its arrays, twice (2 + 2P) 4 n, with --checkpoint or --resume.
    """
    from mpi_demo import network
    from mpi_demo.cnn import GEOMETRY, lengths

    n_features, n_classes = _data_shape(config)
    net = network.build(config, n_features, n_classes)  # a layout only: nothing allocated
    sizes = net.seg_sizes
    n, n_max = sum(sizes), max(sizes)
    if config.model == "cnn":
        pos = lengths(n_features)
        chans = (1, *config.channels)
        per_sample = sum(
            pos[layer + 1] * (k * chans[layer] + 2 * chans[layer + 1])
            for layer, (k, _, _) in enumerate(GEOMETRY)
        )
        per_sample += pos[-1] * chans[-1] + n_classes
    else:
        per_sample = sum(config.layer_sizes(n_features, n_classes))
    samples = n_samples(config.dataset, config.samples)
    n_test = n_test_samples(config.dataset, samples, config.test_fraction)
    shard = -(-config.batch // ranks)
    building = 0
    if config.dataset == "synthetic":
        building = SYNTHETIC_BYTES_PER_VALUE * samples * n_features + SYNTHETIC_BYTES_PER_SAMPLE * samples
    checkpointing = config.checkpoint is not None or config.resume is not None
    held = {
        "parameters": 4 * n * (3 + ranks),
        "compressor state": 8 * n * workers,
        "data": 4 * samples * (n_features + 2),
    }
    transient = {
        "building the data": building,
        "initialisation": 4 * n_max + INIT_BYTES_PER_WEIGHT * min(n_max, DRAW_CHUNK),
        "one step": 8 * n + COMPRESS_BYTES_PER_ELEMENT * n_max + 4 * per_sample * 3 * shard,
        "test forward pass": 4 * per_sample * max(n_test, config.validation),
        "checkpoint": 2 * 4 * n * (2 + 2 * ranks) if checkpointing else 0,
    }
    largest = max(transient, key=transient.__getitem__)
    return {**held, largest: transient[largest]}


def memory_limit(meminfo: str = "/proc/meminfo") -> tuple[int, str]:
    """(bytes this process may use, where the figure comes from).

    MemAvailable of /proc/meminfo, shared by the ranks the launcher put on this host;
    :data:`FALLBACK_MEMORY_LIMIT` where there is no such line.
    """
    available, source = FALLBACK_MEMORY_LIMIT, "the fixed limit for systems without /proc/meminfo"
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available, source = int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
                    break
    except (OSError, ValueError, IndexError):
        pass
    for var in LOCAL_SIZE_VARIABLES:
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 1:
            return available // int(value), f"{source}, shared by {value} ranks on this host"
    return available, source


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_memory(config: TrainConfig, workers: int, ranks: int, limit: tuple[int, str] | None = None) -> None:
    """Refuse, naming the estimate and the limit, a run whose estimate exceeds the memory there is.

    The option named is the one behind the largest part: ``--samples`` (or ``--features``)
    where the data set dominates, else the model's widths (``--hidden`` or ``--channels``,
    or ``--features`` where the inputs are the MLP's widest layer).
    """
    parts = memory_estimate(config, workers, ranks)
    available, source = limit if limit is not None else memory_limit()
    total = sum(parts.values())
    if total <= available:
        return
    largest = max(parts, key=parts.__getitem__)
    if largest in ("data", "building the data"):
        option, value = (
            ("--features", config.features)
            if config.features > config.samples
            else ("--samples", config.samples)
        )
    elif config.model == "cnn":
        option, value = "--channels", ",".join(map(str, config.channels))
    elif config.dataset == "synthetic" and config.features > max(config.hidden):
        option, value = "--features", config.features  # the first layer's width: its inputs
    else:
        option, value = "--hidden", ",".join(map(str, config.hidden))
    detail = ", ".join(f"{k} {_gib(v)}" for k, v in parts.items())
    raise ConfigError(
        option,
        value,
        f"the run needs about {_gib(total)} of memory ({detail}); {_gib(available)} available ({source})",
    )
