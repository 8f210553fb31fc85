"""What the sweep trains, fixed before any run: the studies, their training and their grids.

A *study* is one data set with one model; a *setting* is one method with one value of its
hyperparameter. The protocol is pre-registered: every setting of every grid and the
uncompressed baseline train on the same seeds, each run is evaluated on the test set once
(after its last epoch), and the conclusion is a non-inferiority rule on the paired
differences (:mod:`mpi_demo.study.stats`). Nothing is tuned on the test set or chosen
after seeing it.

Every run uses 4 simulated ranks (bit-identical to ``mpiexec -n 4``: docs/demo.md) and the
demo's optimizer defaults with the cosine learning-rate schedule. The methods and what is
fixed in each:

* ``vgc-exact`` / ``vgc``: alpha (zeta 0.999, residual feedback); on the CNN with the exact
  per-sample convolution variance;
* ``vgc-exact-reset`` / ``vgc-reset``: the same with the residual reset after a send;
* ``vgc-approx``: alpha with the approximate convolution variance (CNN only);
* ``hybrid``: tau, with VGC's alpha fixed at 2 (zeta 0.999, exact variance on the CNN);
* ``strom``: tau;
* ``topk``: the fraction of each segment sent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Simulated ranks of every run.
RANKS = 4
#: One percentage point of accuracy: the non-inferiority margin.
TOLERANCE = 0.01
#: Slack of the comparisons with TOLERANCE: accuracies are count / n in float64, so a
#: difference of exactly one point can come out as -0.010000000000000009.
SLACK = 1e-9
#: The seeds of every setting (the baseline's too): the pairing of the comparison.
SEEDS = (1, 2, 3, 4, 5, 6, 7)
#: Compressor backend of every run: numba-cpu gives the numpy backend's bytes, faster.
BACKEND = "numba-cpu"

#: The tuned hyperparameter of each method and the TrainConfig fields fixed with it.
PARAMETER = {
    "vgc-exact": "alpha",
    "vgc-exact-reset": "alpha",
    "vgc-approx": "alpha",
    "vgc": "alpha",
    "vgc-reset": "alpha",
    "hybrid": "tau",
    "strom": "tau",
    "topk": "fraction",
}
#: +1: a larger value compresses more; -1: a smaller value does.
DIRECTION = {m: (-1 if m == "topk" else 1) for m in PARAMETER}


@dataclass(frozen=True)
class Study:
    """One data set with one model, its training settings and its grids."""

    name: str
    dataset: str
    model: str
    epochs: int
    validation: int  # training samples held out: the convergence curve, never a choice
    grids: dict[str, tuple[float, ...]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)  # further TrainConfig fields
    why_budget: str = ""

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.grids)


@dataclass(frozen=True)
class Setting:
    """One method of a study with one value of its hyperparameter (method "none": no value)."""

    study: str
    method: str
    value: float | None = None

    @property
    def label(self) -> str:
        if self.method == "none":
            return "none"
        return f"{self.method} {PARAMETER[self.method]}={self.value:g}"


_ALPHA = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)

FULL = (
    Study(
        "mnist1d-cnn",
        "mnist1d-10k",
        "cnn",
        epochs=30,
        validation=500,
        grids={
            "vgc-exact": _ALPHA,
            "vgc-exact-reset": _ALPHA,
            "vgc-approx": _ALPHA,
            "hybrid": (0.01, 0.03, 0.1, 0.3),
            "strom": (0.003, 0.01, 0.03, 0.1, 0.3),
            "topk": (0.1, 0.03, 0.01, 0.003, 0.001),
        },
        overrides={"lr_schedule": "cosine"},
        why_budget=(
            "the uncompressed CNN with the cosine schedule over 20 epochs ends at 99.5 % "
            "training accuracy with its test accuracy flat from epoch 13; every method gets "
            "1.5 times that budget"
        ),
    ),
    Study(
        "synthetic-mlp",
        "synthetic",
        "mlp",
        epochs=12,
        validation=800,
        grids={
            "vgc": _ALPHA,
            "vgc-reset": _ALPHA,
            "hybrid": (0.03, 0.1, 0.3, 1.0),
            "strom": (0.01, 0.03, 0.1, 0.3, 1.0),
            "topk": (0.03, 0.01, 0.003, 0.001, 0.0003),
        },
        overrides={"lr_schedule": "cosine", "samples": 25000, "test_fraction": 0.4},
        why_budget=(
            "the uncompressed MLP with the cosine schedule over 8 epochs has its test accuracy "
            "flat from epoch 6 (16 epochs end lower: it starts to overfit); every method gets "
            "1.5 times that budget"
        ),
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
        overrides={"channels": (8, 8, 8), "steps": 20, "lr_schedule": "cosine"},
    ),
    Study(
        "synthetic-mlp",
        "synthetic",
        "mlp",
        epochs=1,
        validation=200,
        grids={"vgc": (1.0, 2.0), "strom": (0.03, 0.1)},
        overrides={"samples": 1200, "hidden": (32,), "steps": 20, "lr_schedule": "cosine"},
    ),
)
#: Seeds of the quick sweep (a smoke test of the machinery, not evidence).
QUICK_SEEDS = (1, 2, 3)


def settings(study: Study) -> list[Setting]:
    """The baseline and every grid value, in the order the report lists them."""
    out = [Setting(study.name, "none")]
    for method, values in study.grids.items():
        out += [Setting(study.name, method, v) for v in values]
    return out


def config_fields(study: Study, setting: Setting, seed: int) -> dict[str, Any]:
    """The TrainConfig fields of one run (JSON-ready; the cache key is built from them)."""
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
    if method.endswith("-reset"):
        kw["residual"] = "reset"
    if method.startswith("vgc"):
        kw["alpha"] = setting.value
    elif method in ("strom", "hybrid"):
        kw["tau"] = setting.value
        if method == "hybrid":
            kw["alpha"] = 2.0
    elif method == "topk":
        kw["fraction"] = setting.value
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


def study_dict(study: Study) -> dict[str, Any]:
    d = asdict(study)
    d["grids"] = {k: list(v) for k, v in study.grids.items()}
    return d
