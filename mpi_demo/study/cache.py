"""The run cache: finished runs keyed by their configuration and the code that computes them.

A run's key is the SHA-256 of its TrainConfig fields (JSON, sorted keys) together with
:func:`code_hash`, the SHA-256 of every source file that takes part in computing its
numbers (``vgc_ref/**/*.py`` and ``mpi_demo/*.py`` but the sweep's own reporting code).
Any change to that code changes every key, so a cached row is never reused by different
code. The sweep reads the cache only when asked (``--reuse``); it always appends the runs
it trains, so an interrupted sweep can be continued with ``--reuse``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: Sources that do not take part in computing a run's numbers.
EXCLUDED = (
    "mpi_demo/study/",
    "mpi_demo/sweep.py",
    "mpi_demo/cli.py",
    "vgc_ref/conformance/",
    "vgc_ref/bench.py",
)


def code_files(root: Path = ROOT) -> list[Path]:
    """The hashed source files, in sorted order of their paths relative to ``root``."""
    files = []
    for package in ("vgc_ref", "mpi_demo"):
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if not any(rel.startswith(e) for e in EXCLUDED):
                files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def code_hash(root: Path = ROOT) -> str:
    """SHA-256 over (relative path, NUL, contents, NUL) of every file of :func:`code_files`."""
    h = hashlib.sha256()
    for path in code_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def run_key(fields: dict[str, Any], code: str) -> str:
    """The cache key of one run: SHA-256 of its configuration fields and the code hash."""
    text = json.dumps({"config": fields, "code": code}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load(path: Path) -> dict[str, dict[str, Any]]:
    """key -> row of every complete line of a cache file (none when it does not exist)."""
    rows: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interruption
            rows[item["key"]] = item["row"]
    return rows


def append(path: Path, key: str, row: dict[str, Any]) -> None:
    """Add one finished run to the cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps({"key": key, "row": row}) + "\n")
