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
from collections.abc import Callable
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


#: How every line the sweep appends begins (``json.dumps({"key": ..., "row": ...})``).
LINE_START = '{"key": "'


class CacheError(ValueError):
    """A cache file that ``--reuse`` cannot read; the message names the line."""


def load(path: Path, check_row: Callable[[Any, str], None] | None = None) -> dict[str, dict[str, Any]]:
    """key -> row of every complete line of a cache file (none when it does not exist).

    Checked line by line: each line is ``{"key": 64 hex digits, "row": an object}``, and
    ``check_row(row, "row")`` (the sweep passes :func:`mpi_demo.study.schema.check_run`)
    raising ValueError for a row it cannot use; the last of two lines with one key wins.
    A line cut short by an interruption (it starts as the sweep starts every line,
    ``{"key": "``, and is not complete JSON) is skipped; any other line that is not a
    complete record raises :class:`CacheError` naming its number.
    """
    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return rows
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CacheError(f"cannot read it ({err})") from err
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line, parse_constant=_no_constant)
        except json.JSONDecodeError as err:
            if line.startswith(LINE_START):
                continue  # a line cut short by an interruption
            raise CacheError(f"line {number} is not a JSON record ({err})") from err
        except ValueError as err:  # NaN or Infinity, which json.dumps of a run never writes
            raise CacheError(f"line {number}: {err}") from err
        if not isinstance(item, dict) or set(item) != {"key", "row"}:
            raise CacheError(f'line {number} is not {{"key": ..., "row": ...}}')
        key = item["key"]
        if not isinstance(key, str) or len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise CacheError(f"line {number}: key {key!r} is not a SHA-256 (64 hex digits)")
        if not isinstance(item["row"], dict):
            raise CacheError(f"line {number}: row is a JSON {type(item['row']).__name__}, expected an object")
        if check_row is not None:
            try:
                check_row(item["row"], "row")
            except ValueError as err:
                raise CacheError(f"line {number}: {err}") from err
        rows[key] = item["row"]
    return rows


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def append(path: Path, key: str, row: dict[str, Any]) -> None:
    """Add one finished run to the cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        f.seek(0, 2)
        cut = f.tell() > 0 and (f.seek(-1, 2), f.read(1))[1] != b"\n"
        # after a line cut short by an interruption, start a new line: the cut one stays alone
        f.write((b"\n" if cut else b"") + (json.dumps({"key": key, "row": row}) + "\n").encode())
