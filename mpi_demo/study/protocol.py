"""The sweep's two phases: tuning on the validation split, testing on fresh seeds.

:func:`choose` is the tuning rule; :func:`tune` runs the grids and extends them until
every choice lies inside its grid; :func:`test` trains the chosen settings and the
baseline on the test seeds; :func:`summarize` pairs them with the baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mpi_demo.study import stats
from mpi_demo.study.plan import (
    DIRECTION,
    MAX_EXTENSIONS,
    SLACK,
    TEST_SEEDS,
    TOLERANCE,
    TUNING_SEED,
    Setting,
    Study,
    config_fields,
    extend,
)
from mpi_demo.study.runner import Job

RunMany = Callable[[Sequence[Job]], list[dict[str, Any]]]


def job(study: Study, method: str, value: float | None, seed: int, phase: str) -> Job:
    fields = config_fields(study, Setting(study.name, method, value), seed, phase == "tuning")
    return Job(study.name, method, value, seed, phase, fields)


def choose(method: str, results: dict[float, tuple[float, float]], baseline: float) -> tuple[float, str]:
    """The chosen value of one method's grid, and why.

    ``results`` maps each value to its (validation accuracy, compression ratio). The
    choice is the value with the highest ratio among those within one point of the
    baseline's validation accuracy (``acc >= baseline - 0.01``); when none is, the value
    with the highest accuracy.
    """
    passing = {v: r for v, r in results.items() if r[0] - baseline >= -TOLERANCE - SLACK}
    if passing:
        value = max(passing, key=lambda v: (passing[v][1], DIRECTION[method] * v))
        return value, "most compressive within one point on validation"
    value = max(results, key=lambda v: (results[v][0], -DIRECTION[method] * v))
    return value, "none within one point on validation: the most accurate"


def _edge(method: str, values: Sequence[float], chosen: float) -> str | None:
    """ "more" or "less" when ``chosen`` is the most or least compressive value, else None."""
    ordered = sorted(values, key=lambda v: DIRECTION[method] * v)
    if chosen == ordered[-1]:
        return "more"
    if chosen == ordered[0]:
        return "less"
    return None


def tune(
    studies: Sequence[Study], run_many: RunMany
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Phase 1 for every study: the baseline and every grid value, extended past an edge
    that holds the choice (at most MAX_EXTENSIONS values per side).

    Returns every tuning row and, per study, per method: the chosen value, the reason,
    the values tried, and whether the choice ended inside its grid.
    """
    jobs = []
    for st in studies:
        jobs.append(job(st, "none", None, TUNING_SEED, "tuning"))
        for method, values in st.grids.items():
            jobs += [job(st, method, v, TUNING_SEED, "tuning") for v in values]
    rows = list(run_many(jobs))
    extended: dict[tuple[str, str, str], int] = {}
    while True:
        choices = _choices(studies, rows)
        more = []
        for st in studies:
            for method, c in choices[st.name].items():
                side = _edge(method, c["values"], c["value"])
                if side is None or extended.get((st.name, method, side), 0) >= MAX_EXTENSIONS:
                    continue
                extended[(st.name, method, side)] = extended.get((st.name, method, side), 0) + 1
                more.append(
                    job(st, method, extend(method, tuple(c["values"]), side == "more"), TUNING_SEED, "tuning")
                )
        if not more:
            break
        rows += run_many(more)
    for st in studies:
        for method, c in choices[st.name].items():
            c["inside"] = _edge(method, c["values"], c["value"]) is None
    return rows, choices


def _choices(studies: Sequence[Study], rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for st in studies:
        mine = [r for r in rows if r["study"] == st.name]
        base = next(r["accuracy"] for r in mine if r["method"] == "none")
        out[st.name] = {}
        for method in st.methods:
            results = {
                r["value"]: (r["accuracy"], r["compression_ratio"]) for r in mine if r["method"] == method
            }
            value, why = choose(method, results, base)
            out[st.name][method] = {
                "value": value,
                "why": why,
                "values": sorted(results),
                "validation_accuracy": results[value][0],
                "validation_ratio": results[value][1],
                "baseline_validation_accuracy": base,
            }
    return out


def test(
    studies: Sequence[Study],
    choices: dict[str, dict[str, Any]],
    run_many: RunMany,
    seeds: Sequence[int] = TEST_SEEDS,
) -> list[dict[str, Any]]:
    """Phase 2: the baseline and each chosen setting on every test seed, judged on the test set."""
    jobs = []
    for st in studies:
        for seed in seeds:
            jobs.append(job(st, "none", None, seed, "test"))
            for method, c in choices[st.name].items():
                jobs.append(job(st, method, c["value"], seed, "test"))
    return list(run_many(jobs))


def summarize(
    studies: Sequence[Study], choices: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per study and method (baseline first): test accuracy over the seeds, the compression
    ratio (total dense bytes over total message bytes over the seeds), and the paired
    comparison with the baseline (:func:`mpi_demo.study.stats.paired`)."""
    out = []
    for st in studies:
        mine = [r for r in rows if r["study"] == st.name and r["phase"] == "test"]
        base = {r["seed"]: r["accuracy"] for r in mine if r["method"] == "none"}
        for method in ("none", *st.methods):
            runs = [r for r in mine if r["method"] == method]
            acc = [r["accuracy"] for r in runs]
            dense = sum(r["steps"] * r["n_params"] * 4 * 4 for r in runs)
            sent = sum(r["steps"] * 4 * r["bytes_per_step"] for r in runs)
            entry: dict[str, Any] = {
                "study": st.name,
                "dataset": st.dataset,
                "model": st.model,
                "method": method,
                "value": None if method == "none" else choices[st.name][method]["value"],
                "n_seeds": len(runs),
                "mean_accuracy": stats.mean(acc),
                "sd_accuracy": stats.sample_sd(acc),
                "min_accuracy": min(acc),
                "max_accuracy": max(acc),
                "compression_ratio": dense / sent,
                "sent_fraction": stats.mean([r["sent_fraction"] for r in runs]),
                "step_ms": 1e3
                * stats.mean(
                    [
                        sum(r[f"{p}_s"] for p in ("compute", "variance", "compress", "communicate"))
                        for r in runs
                    ]
                ),
                "variance_ms": 1e3 * stats.mean([r["variance_s"] for r in runs]),
                "compute_ms": 1e3 * stats.mean([r["compute_s"] for r in runs]),
            }
            if method != "none":
                entry.update(stats.paired({r["seed"]: r["accuracy"] for r in runs}, base))
                entry.update(
                    {
                        k: choices[st.name][method][k]
                        for k in ("why", "values", "inside", "validation_accuracy", "validation_ratio")
                    }
                )
            out.append(entry)
    return out
