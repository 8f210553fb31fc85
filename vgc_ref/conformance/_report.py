"""A pytest plugin that records the outcome of every property for the --report JSON."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import pytest

#: Version of the report's JSON layout (docs/conformance.md, "The report").
REPORT_VERSION = 1


def _example(excinfo) -> str | None:
    """The Hypothesis falsifying example attached to a failure, if any."""
    if excinfo is None:
        return None
    notes = getattr(excinfo.value, "__notes__", None) or []
    found = [n for n in notes if "test case" in n.lower() or "example" in n.lower() or "draw" in n.lower()]
    return "\n".join(found) if found else None


def replay_command(entry: dict, meta: dict) -> str:
    """The command that runs one failed entry again on its own, with the same examples."""
    impl = meta.get("impl", "vgc_ref")
    if entry["property"] == "test_rule_case" and entry.get("params"):
        return f"python -m vgc_ref.conformance.table --impl {impl} --case {entry['params']}"
    options = f"--max-examples {meta.get('max_examples')}"
    if meta.get("derandomize"):
        options += " --derandomize"
    return f"python -m vgc_ref.conformance --impl {impl} {options} -k '{entry['id']}'"


class Recorder:
    """Collects one entry per test item: property, parameters, outcome, message, example."""

    def __init__(self) -> None:
        self.entries: dict[str, dict] = {}
        self.started = time.time()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        nodeid = item.nodeid
        entry = self.entries.setdefault(
            nodeid,
            {
                "id": nodeid.split("::", 1)[-1],
                "property": getattr(item, "originalname", item.name),
                "module": item.module.__name__.rsplit(".", 1)[-1] if item.module else None,
                "params": item.callspec.id if hasattr(item, "callspec") else None,
                "outcome": "passed",
                "duration_s": 0.0,
            },
        )
        entry["duration_s"] = round(entry["duration_s"] + report.duration, 4)
        if report.skipped:
            entry["outcome"] = "skipped"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            entry["message"] = reason
        elif report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            exc = call.excinfo.value if call.excinfo else None
            entry["message"] = f"{type(exc).__name__}: {exc}" if exc is not None else str(report.longrepr)
            entry["example"] = _example(call.excinfo)

    def summary(self) -> dict:
        counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for e in self.entries.values():
            counts[e["outcome"]] += 1
        return counts

    def failures(self) -> list[dict]:
        return [e for e in self.entries.values() if e["outcome"] in ("failed", "error", "skipped")]

    def write(self, path: str | Path, meta: dict) -> None:
        for entry in self.entries.values():
            if entry["outcome"] in ("failed", "error"):
                entry["replay"] = replay_command(entry, meta)
        doc = {
            "report_version": REPORT_VERSION,
            **meta,
            "python": platform.python_version(),
            "duration_s": round(time.time() - self.started, 3),
            "summary": self.summary(),
            "passed": not self.failures() and bool(self.entries),
            "results": list(self.entries.values()),
        }
        Path(path).write_text(json.dumps(doc, indent=2) + "\n")
