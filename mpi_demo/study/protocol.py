"""The pre-registered protocol: every setting on every seed, then the paired verdicts.

:func:`jobs` lists the runs (nothing depends on a result, so they are all known before the
first one trains); :func:`summarize` pairs each setting with the baseline seed by seed;
:func:`best` gives, per method, the most compressive setting that holds the baseline;
:func:`epochs_to_reach` reads the validation curves for how fast each setting gets within
one point of the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mpi_demo.study import stats
from mpi_demo.study.plan import SEEDS, SLACK, TOLERANCE, Setting, Study, config_fields, settings
from mpi_demo.study.runner import Job


def job(study: Study, setting: Setting, seed: int) -> Job:
    return Job(study.name, setting.method, setting.value, seed, "test", config_fields(study, setting, seed))


def jobs(studies: Sequence[Study], seeds: Sequence[int] = SEEDS) -> list[Job]:
    """Every run of the protocol: per study, per seed, the baseline and every grid value."""
    return [job(st, setting, seed) for st in studies for seed in seeds for setting in settings(st)]


def _ratio(runs: Sequence[dict[str, Any]]) -> float:
    """Total dense bytes over total message bytes over the runs (docs/algorithm.md section 8)."""
    dense = sum(r["steps"] * r["n_params"] * 4 * 4 for r in runs)
    sent = sum(r["steps"] * 4 * r["bytes_per_step"] for r in runs)
    return dense / sent


def _first_epoch_within(curve: Sequence[float | None], target: float) -> int | None:
    """1-based epoch at which ``curve`` first reaches ``target``; None when it never does."""
    for e, acc in enumerate(curve, start=1):
        if acc is not None and acc >= target - SLACK:
            return e
    return None


def epochs_to_reach(runs: Sequence[dict[str, Any]], base: dict[int, dict[str, Any]]) -> int | None:
    """Median over the seeds of the first epoch whose validation accuracy is within one point
    of the baseline's final validation accuracy on the same seed (None: half the seeds or
    more never get there)."""
    epochs = []
    for r in runs:
        b = base.get(r["seed"])
        if b is None or not r.get("validation_curve") or not b.get("validation_curve"):
            continue
        epochs.append(_first_epoch_within(r["validation_curve"], b["validation_curve"][-1] - TOLERANCE))
    if not epochs:
        return None
    never = len(epochs) + 1_000_000
    ordered = sorted(never if e is None else e for e in epochs)
    median = ordered[(len(ordered) - 1) // 2]  # the lower median: an integer epoch
    return None if median == never else median


def summarize(studies: Sequence[Study], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per study and setting (baseline first): test accuracy over the seeds, the compression
    ratio, the paired comparison with the baseline (:func:`mpi_demo.study.stats.paired`) and
    the epochs to come within one point on validation."""
    out = []
    for st in studies:
        mine = [r for r in rows if r["study"] == st.name]
        base_rows = {r["seed"]: r for r in mine if r["method"] == "none"}
        base = {s: r["accuracy"] for s, r in base_rows.items()}
        for setting in settings(st):
            runs = [r for r in mine if r["method"] == setting.method and r["value"] == setting.value]
            if not runs:
                continue
            acc = [r["accuracy"] for r in runs]
            entry: dict[str, Any] = {
                "study": st.name,
                "dataset": st.dataset,
                "model": st.model,
                "method": setting.method,
                "value": setting.value,
                "n_seeds": len(runs),
                "mean_accuracy": stats.mean(acc),
                "sd_accuracy": stats.sample_sd(acc),
                "min_accuracy": min(acc),
                "max_accuracy": max(acc),
                "per_seed": {r["seed"]: [r["accuracy"], r["compression_ratio"]] for r in runs},
                "compression_ratio": _ratio(runs),
                "sent_fraction": stats.mean([r["sent_fraction"] for r in runs]),
                "epochs_within_one_point": epochs_to_reach(runs, base_rows),
                "variance_ms": 1e3 * stats.mean([r["variance_s"] for r in runs]),
                "compute_ms": 1e3 * stats.mean([r["compute_s"] for r in runs]),
            }
            if setting.method != "none":
                entry.update(stats.paired({r["seed"]: r["accuracy"] for r in runs}, base))
            out.append(entry)
    return out


def best(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per study and method, the setting with the highest compression ratio that holds the
    baseline (None when none does), with the method's most compressive setting tried."""
    out = []
    keys = dict.fromkeys((s["study"], s["method"]) for s in summary if s["method"] != "none")
    for study, method in keys:
        mine = [s for s in summary if s["study"] == study and s["method"] == method]
        holding = [s for s in mine if s["holds"]]
        out.append(
            {
                "study": study,
                "method": method,
                "best": max(holding, key=lambda s: s["compression_ratio"]) if holding else None,
                "tried": len(mine),
                "highest_ratio_tried": max(s["compression_ratio"] for s in mine),
            }
        )
    return out
