"""What a recorded run and a results.json must hold: checked before ``--render`` or ``--reuse``.

A row of the run cache and a run of results.json have the same fields (those
:func:`mpi_demo.study.runner.train` writes and :mod:`~mpi_demo.study.protocol` and
:mod:`~mpi_demo.study.report` read). A file that breaks a rule is refused with
:class:`SchemaError`, whose message names the entry (``runs[12].accuracy``, line 7 of the
cache) and the value, before anything trains or is written (docs/results.md, "Inputs the
sweep refuses").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mpi_demo.study.plan import Study, settings


class SchemaError(ValueError):
    """A results.json or cache entry that the sweep cannot use; the message names it."""


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _integer(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


#: Run fields: (name, rule, what the rule says). ``validation_curve`` may be absent.
RUN_FIELDS = (
    ("study", lambda x: isinstance(x, str) and x != "", "a non-empty string"),
    ("method", lambda x: isinstance(x, str) and x != "", "a non-empty string"),
    ("value", lambda x: x is None or _number(x), "a finite number or null"),
    ("seed", _integer, "an integer"),
    ("accuracy", lambda x: _number(x) and 0 <= x <= 1, "a number in [0, 1]"),
    ("compression_ratio", lambda x: _number(x) and x > 0, "a number > 0"),
    ("sent_fraction", lambda x: _number(x) and 0 <= x <= 1, "a number in [0, 1]"),
    ("bytes_per_step", lambda x: _number(x) and x > 0, "a number > 0"),
    ("steps", lambda x: _integer(x) and x >= 1, "an integer >= 1"),
    ("n_params", lambda x: _integer(x) and x >= 1, "an integer >= 1"),
    ("compute_s", lambda x: _number(x) and x > 0, "a number > 0"),
    ("variance_s", lambda x: _number(x) and x >= 0, "a number >= 0"),
)


def check_run(run: Any, where: str) -> None:
    """The fields of one recorded run that the summary reads, with their types."""
    if not isinstance(run, dict):
        raise SchemaError(f"{where} is a JSON {type(run).__name__}, expected an object")
    for name, rule, what in RUN_FIELDS:
        if name not in run:
            raise SchemaError(f"{where}.{name} is missing")
        if not rule(run[name]):
            raise SchemaError(f"{where}.{name} is {run[name]!r}, expected {what}")
    curve = run.get("validation_curve")
    if curve is not None and not (
        isinstance(curve, list) and all(c is None or (_number(c) and 0 <= c <= 1) for c in curve)
    ):
        raise SchemaError(f"{where}.validation_curve is {curve!r}, expected a list of accuracies or nulls")


def check_runs(runs: Sequence[dict[str, Any]], studies: Sequence[Study], what: str) -> None:
    """What the summary needs of the runs, study by study: baseline runs, one compressed
    setting at least, and every compressed setting sharing a seed with the baseline; no run
    recorded twice."""
    seen: dict[tuple, int] = {}
    for i, r in enumerate(runs):
        key = (r["study"], r["method"], r["value"], r["seed"])
        if key in seen:
            raise SchemaError(
                f"{what}[{i}] repeats {what}[{seen[key]}] (study {r['study']}, method {r['method']}, "
                f"value {r['value']}, seed {r['seed']})"
            )
        seen[key] = i
    for st in studies:
        mine = [r for r in runs if r["study"] == st.name]
        base = {r["seed"] for r in mine if r["method"] == "none"}
        if not base:
            raise SchemaError(f"{what}: study {st.name} has no baseline run (method none)")
        compressed = 0
        for setting in settings(st)[1:]:
            seeds = {r["seed"] for r in mine if r["method"] == setting.method and r["value"] == setting.value}
            if seeds and not seeds & base:
                raise SchemaError(f"{what}: {st.name} {setting.label} shares no seed with the baseline")
            compressed += bool(seeds)
        if not compressed:
            raise SchemaError(f"{what}: study {st.name} has no run of a compressed setting of the plan")


def _meta_rule(doc: dict[str, Any], path: str, rule, what: str) -> None:
    value: Any = doc
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise SchemaError(f"{path} is missing")
        value = value[key]
    if not rule(value):
        raise SchemaError(f"{path} is {value!r}, expected {what}")


def check_results(doc: Any, plan_studies: Sequence[Study]) -> tuple[Study, ...]:
    """A results.json document for ``--render``: its studies (those of the plan), its runs
    and the fields of the record that the report prints. Returns the studies to render."""
    if not isinstance(doc, dict):
        raise SchemaError(f"the document is a JSON {type(doc).__name__}, expected an object")
    text = (lambda x: isinstance(x, str), "a string")
    for path, (rule, what) in {
        "command": text,
        "code_hash": (lambda x: isinstance(x, str) and len(x) >= 12, "a string of 12 or more characters"),
        "provenance.commit": (lambda x: x is None or isinstance(x, str), "a string or null"),
        "provenance.dirty": (lambda x: x is None or isinstance(x, bool), "true, false or null"),
        "provenance.machine.cores": (lambda x: x is None or _integer(x), "an integer or null"),
        "elapsed_s": (_number, "a finite number"),
        "jobs": (_integer, "an integer"),
        "n_trained": (_integer, "an integer"),
        "n_cached": (_integer, "an integer"),
        "load": (lambda x: isinstance(x, list) and len(x) == 2 and all(map(_number, x)), "two numbers"),
        "seeds": (lambda x: isinstance(x, list) and all(map(_integer, x)), "a list of integers"),
    }.items():
        _meta_rule(doc, path, rule, what)
    studies = doc.get("studies")
    if not isinstance(studies, list) or not studies:
        raise SchemaError(f"studies is {studies!r}, expected a non-empty list")
    known = {s.name: s for s in plan_studies}
    names = []
    for i, s in enumerate(studies):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            raise SchemaError(f"studies[{i}] is {s!r}, expected an object with a name")
        if s["name"] not in known:
            raise SchemaError(
                f"studies[{i}].name {s['name']!r} is not a study of this plan ({', '.join(known)}); "
                "--quick renders the quick plan's studies"
            )
        if s["name"] in names:
            raise SchemaError(f"studies[{i}].name {s['name']!r} is listed twice")
        names.append(s["name"])
    runs = doc.get("runs")
    if not isinstance(runs, list):
        raise SchemaError(f"runs is {runs!r}, expected a list")
    for i, r in enumerate(runs):
        check_run(r, f"runs[{i}]")
        if r["study"] not in names:
            raise SchemaError(f"runs[{i}].study {r['study']!r} is not one of studies ({', '.join(names)})")
    chosen = tuple(s for s in plan_studies if s.name in names)  # in the plan's order
    check_runs(runs, chosen, "runs")
    return chosen
