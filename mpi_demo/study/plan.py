"""What the sweep trains: the studies, their training settings and hyperparameter grids.

A *study* is one data set with one model; a *setting* is one method with one value of its
hyperparameter. Every training run uses 4 simulated ranks (bit-identical to
``mpiexec -n 4``: docs/demo.md) and the demo's optimizer defaults unless a study says
otherwise.

Each method has one tuned hyperparameter; the others are fixed and stated here:

* ``vgc``: alpha (zeta 0.999); on the CNN twice, with the exact and with the approximate
  convolution variance (``vgc-exact``, ``vgc-approx``);
* ``strom``: tau;
* ``hybrid``: tau, with VGC's alpha fixed at 2 (zeta 0.999) and, on the CNN, the exact
  convolution variance;
* ``topk``: the fraction of each segment sent.

Grids are geometric. :data:`DIRECTION` says which way a value compresses more, and
:func:`extend` gives the next value past an edge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Simulated ranks of every run.
RANKS = 4
#: One percentage point of accuracy.
TOLERANCE = 0.01
#: Slack of the comparisons with TOLERANCE: accuracies are count / n in float64, so a
#: difference of exactly one point can come out as -0.010000000000000009.
SLACK = 1e-9
#: Seed of the tuning runs, and the fresh seeds of the test runs.
TUNING_SEED = 0
TEST_SEEDS = (1, 2, 3)
#: Compressor backend of every run: numba-cpu gives the numpy backend's bytes, faster.
BACKEND = "numba-cpu"
#: Most extensions of a grid past one edge.
MAX_EXTENSIONS = 3

#: The tuned hyperparameter of each method, the TrainConfig field it sets, and the
#: factor between neighbouring grid values (for extensions).
PARAMETER = {
    "vgc-exact": ("alpha", 1.5),
    "vgc-approx": ("alpha", 1.5),
    "vgc": ("alpha", 1.5),
    "strom": ("tau", 3.0),
    "hybrid": ("tau", 3.0),
    "topk": ("fraction", 3.0),
}
#: +1: a larger value compresses more; -1: a smaller value does.
DIRECTION = {"vgc-exact": 1, "vgc-approx": 1, "vgc": 1, "strom": 1, "hybrid": 1, "topk": -1}


@dataclass(frozen=True)
class Study:
    """One data set with one model, its training settings and its grids."""

    name: str
    dataset: str
    model: str
    epochs: int
    validation: int  # training samples held out for tuning
    grids: dict[str, tuple[float, ...]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.grids)


@dataclass(frozen=True)
class Setting:
    """One method of a study with one value of its hyperparameter (method "none": no value)."""

    study: str
    method: str  # "none", "vgc", "vgc-exact", "vgc-approx", "strom", "hybrid", "topk"
    value: float | None = None

    @property
    def label(self) -> str:
        if self.method == "none":
            return "none"
        return f"{self.method} {PARAMETER[self.method][0]}={self.value:g}"


_VGC = (1.0, 1.5, 2.25, 3.375, 5.0625)
_TAU = (0.01, 0.03, 0.09, 0.27)
_FRACTION = (0.1, 0.033, 0.011, 0.0037)

FULL = (
    Study(
        "mnist1d-cnn",
        "mnist1d",
        "cnn",
        epochs=20,
        validation=500,
        grids={"vgc-exact": _VGC, "vgc-approx": _VGC, "strom": _TAU, "hybrid": _TAU, "topk": _FRACTION},
    ),
    Study(
        "mnist1d-mlp",
        "mnist1d",
        "mlp",
        epochs=20,
        validation=500,
        grids={"vgc": _VGC, "strom": _TAU, "hybrid": _TAU, "topk": _FRACTION},
    ),
    Study(
        "synthetic-mlp",
        "synthetic",
        "mlp",
        epochs=8,
        validation=800,
        grids={"vgc": _VGC, "strom": _TAU, "hybrid": _TAU, "topk": _FRACTION},
    ),
)

QUICK = (
    Study(
        "mnist1d-cnn",
        "mnist1d",
        "cnn",
        epochs=1,
        validation=500,
        grids={"vgc-exact": (1.0, 2.0), "vgc-approx": (1.0, 2.0), "topk": (0.1, 0.01)},
        overrides={"channels": (8, 8, 8), "steps": 20},
    ),
    Study(
        "synthetic-mlp",
        "synthetic",
        "mlp",
        epochs=1,
        validation=200,
        grids={"vgc": (1.0, 2.0), "strom": (0.03, 0.1)},
        overrides={"samples": 1200, "hidden": (32,), "steps": 20},
    ),
)


def config_fields(study: Study, setting: Setting, seed: int, validation: bool) -> dict[str, Any]:
    """The TrainConfig fields of one run (JSON-ready; the cache key is built from them).

    ``validation`` True: a tuning run (the validation split is held out and evaluated).
    Test runs hold out the same split, so a chosen setting is trained on the same data.
    """
    method = setting.method
    kw: dict[str, Any] = {
        "dataset": study.dataset,
        "model": study.model,
        "epochs": study.epochs,
        "validation": study.validation,
        "seed": seed,
        "ranks": RANKS,
        "method": method.split("-")[0],
        "backend": BACKEND,
        **study.overrides,
    }
    if method == "vgc-approx":
        kw["variance"] = "approx"
    if method in ("vgc", "vgc-exact", "vgc-approx"):
        kw["alpha"] = setting.value
    elif method == "strom":
        kw["tau"] = setting.value
    elif method == "hybrid":
        kw["tau"] = setting.value
        kw["alpha"] = 2.0
    elif method == "topk":
        kw["fraction"] = setting.value
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


def extend(method: str, values: tuple[float, ...], towards_more: bool) -> float:
    """The next grid value past the edge that compresses most (``towards_more``) or least."""
    _, factor = PARAMETER[method]
    ordered = sorted(values, key=lambda v: DIRECTION[method] * v)  # least compressive first
    edge = ordered[-1] if towards_more else ordered[0]
    step = factor if (DIRECTION[method] > 0) == towards_more else 1.0 / factor
    return float(f"{edge * step:.4g}")


def study_dict(study: Study) -> dict[str, Any]:
    d = asdict(study)
    d["grids"] = {k: list(v) for k, v in study.grids.items()}
    return d
