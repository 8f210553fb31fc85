"""The training trace: a versioned JSON-lines record of a run, and its comparison.

The format is described field by field in docs/trace.md. In short, one JSON object per
line, UTF-8, ``\\n`` after every line:

* line 1, ``"type": "header"`` -- format name and version, the configuration that fixes
  the arithmetic, P, the segment table and the number of steps;
* per step, ``"type": "step"`` -- the global loss, and per rank the message length, the
  SHA-256 of the message bytes and, per segment, the count of words sent and the
  SHA-256 of the segment's bytes within the message;
* every ``checksum_every`` steps, ``"type": "params"`` -- SHA-256 of each parameter
  segment's float32 little-endian bytes after that step's update;
* at the end of every epoch, ``"type": "eval"`` -- train and test accuracy;
* last, ``"type": "final"`` -- the digests and the parameters themselves (base64).

Nothing in a trace depends on the machine, the time, the backend or whether the workers
ran as MPI ranks or in one process, so equal configurations give equal traces.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vgc_ref import encoding

FORMAT = "vgc-demo-trace"
VERSION = 2


class TraceError(ValueError):
    """A trace file cannot be read: wrong format, version, or a malformed line."""


def sha256(data: bytes | np.ndarray) -> str:
    """Hex SHA-256 of bytes, or of an array's little-endian bytes."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data, data.dtype.newbyteorder("<")).tobytes()
    return hashlib.sha256(data).hexdigest()


def segment_spans(message: bytes) -> list[tuple[int, int, int]]:
    """(start, stop, count) of every segment's bytes (header and words) in a valid message."""
    # docs/format.md: the message header ends with u32 segment_count, a segment
    # header with u32 count (the number of words that follow it).
    n_segments = encoding.HEADER.unpack_from(message, 0)[-1]
    spans, start = [], encoding.HEADER.size
    for _ in range(n_segments):
        count = encoding.SEGMENT_HEADER.unpack_from(message, start)[-1]
        stop = start + encoding.SEGMENT_HEADER.size + encoding.WORD_SIZE * count
        spans.append((start, stop, count))
        start = stop
    return spans


def dumps(record: dict[str, Any]) -> str:
    """One trace line: compact JSON, keys in insertion order, ASCII only."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"


def header_record(
    config: dict[str, Any], ranks: int, layout: Sequence[tuple[str, tuple[int, ...]]], steps: int
) -> dict[str, Any]:
    return {
        "type": "header",
        "format": FORMAT,
        "version": VERSION,
        "config": config,
        "ranks": ranks,
        "segments": [
            {"name": name, "shape": list(shape), "n": int(np.prod(shape))} for name, shape in layout
        ],
        "steps": steps,
    }


def step_record(step: int, epoch: int, loss: float, messages: Sequence[bytes]) -> dict[str, Any]:
    ranks = []
    for message in messages:
        spans = segment_spans(message)
        ranks.append(
            {
                "bytes": len(message),
                "sha256": sha256(message),
                "sent": [count for _, _, count in spans],
                "segments": [sha256(message[a:b]) for a, b, _ in spans],
            }
        )
    return {"type": "step", "step": step, "epoch": epoch, "loss": loss, "ranks": ranks}


def params_record(step: int, params: Sequence[np.ndarray]) -> dict[str, Any]:
    return {"type": "params", "step": step, "sha256": [sha256(p) for p in params]}


def eval_record(epoch: int, step: int, train_accuracy: float, test_accuracy: float) -> dict[str, Any]:
    return {
        "type": "eval",
        "epoch": epoch,
        "step": step,
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
    }


def final_record(steps: int, params: Sequence[np.ndarray]) -> dict[str, Any]:
    return {
        "type": "final",
        "steps": steps,
        "sha256": [sha256(p) for p in params],
        "params": [base64.b64encode(p.astype("<f4").tobytes()).decode("ascii") for p in params],
    }


def final_params(record: dict[str, Any]) -> list[np.ndarray]:
    """The parameters of a ``final`` record as float32 arrays (flat, segment order)."""
    return [np.frombuffer(base64.b64decode(b), "<f4").astype(np.float32) for b in record["params"]]


class TraceWriter:
    """Append trace lines to a file (rank 0 only) and keep them for the checkpoint."""

    def __init__(self, path: str | Path | None, prefix: Sequence[str] = ()) -> None:
        self.lines: list[str] = list(prefix)
        self._file = None
        if path is not None:
            self._file = open(path, "w", encoding="ascii", newline="\n")
            self._file.writelines(self.lines)

    def write(self, record: dict[str, Any]) -> None:
        line = dumps(record)
        self.lines.append(line)
        if self._file is not None:
            self._file.write(line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    """Parse a trace file; check its format name and version."""
    records = []
    with open(path, "rb") as f:  # bytes: a file that is not text fails on its line, not in the reader
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line.decode("ascii"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise TraceError(f"{path}: line {number} is not valid JSON ({err})") from err
            if not isinstance(record, dict):
                raise TraceError(f"{path}: line {number} is not a JSON object")
            records.append(record)
    if not records or records[0].get("type") != "header":
        raise TraceError(f"{path}: the first line must be the header record")
    head = records[0]
    if head.get("format") != FORMAT:
        raise TraceError(f"{path}: format {head.get('format')!r}, expected {FORMAT!r}")
    if head.get("version") != VERSION:
        raise TraceError(f"{path}: version {head.get('version')!r}; this reader knows version {VERSION}")
    return records


@dataclass(frozen=True)
class Difference:
    """Where two traces first differ. ``step``, ``rank`` and ``segment`` are None when not applicable."""

    what: str
    step: int | None = None
    rank: int | None = None
    segment: int | None = None
    segment_name: str | None = None

    def __str__(self) -> str:
        where = []
        if self.step is not None:
            where.append(f"step {self.step}")
        if self.rank is not None:
            where.append(f"rank {self.rank}")
        if self.segment is not None:
            where.append(f"segment {self.segment} ({self.segment_name})")
        return f"{', '.join(where) or 'trace'}: {self.what}"


def _config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = list(dict.fromkeys([*a, *b]))
    return [f"{k} = {a.get(k)!r} vs {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def _diff_step(ra: dict[str, Any], rb: dict[str, Any], names: list[str]) -> Difference | None:
    step = ra["step"]
    if len(ra["ranks"]) != len(rb["ranks"]):
        return Difference(f"{len(ra['ranks'])} vs {len(rb['ranks'])} ranks", step)
    for rank, (ma, mb) in enumerate(zip(ra["ranks"], rb["ranks"])):
        if ma["sha256"] == mb["sha256"] and ma["bytes"] == mb["bytes"]:
            continue
        for seg, (ca, cb, da, db) in enumerate(zip(ma["sent"], mb["sent"], ma["segments"], mb["segments"])):
            name = names[seg] if seg < len(names) else "?"
            if ca != cb:
                return Difference(f"sent {ca} vs {cb} elements", step, rank, seg, name)
            if da != db:
                return Difference(f"segment bytes differ (sent {ca} elements in both)", step, rank, seg, name)
        return Difference(f"message differs ({ma['bytes']} vs {mb['bytes']} bytes)", step, rank)
    if ra["loss"] != rb["loss"]:
        return Difference(f"loss {ra['loss']!r} vs {rb['loss']!r}", step)
    return None


def diff_traces(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[list[str], Difference | None]:
    """Configuration differences (notes) and the first difference in the records, if any."""
    notes = _config_differences(a[0]["config"], b[0]["config"])
    if a[0]["ranks"] != b[0]["ranks"]:
        notes.append(f"ranks = {a[0]['ranks']} vs {b[0]['ranks']}")
    names = [s["name"] for s in a[0]["segments"]]
    if a[0]["segments"] != b[0]["segments"]:
        return notes, Difference("segment tables differ (different models)")
    for ra, rb in zip(a[1:], b[1:]):
        if ra.get("type") != rb.get("type") or ra.get("step") != rb.get("step"):
            return notes, Difference(
                f"record {ra.get('type')} (step {ra.get('step')}) vs {rb.get('type')} (step {rb.get('step')})"
            )
        kind = ra["type"]
        if kind == "step":
            found = _diff_step(ra, rb, names)
            if found is not None:
                return notes, found
        elif kind in ("params", "final"):
            for seg, (da, db) in enumerate(zip(ra["sha256"], rb["sha256"])):
                if da != db:
                    step = ra.get("step", ra.get("steps"))
                    return notes, Difference(
                        f"parameters differ after the update ({kind} record)", step, None, seg, names[seg]
                    )
            if ra != rb:
                return notes, Difference(f"{kind} records differ", ra.get("step"))
        elif ra != rb:
            return notes, Difference(f"{kind} records differ: {ra} vs {rb}", ra.get("step"))
    if len(a) != len(b):
        return notes, Difference(f"{len(a)} vs {len(b)} records (one trace ends early)")
    if notes:
        return notes, Difference("headers differ")
    return notes, None


def compare_files(path_a: str | Path, path_b: str | Path) -> tuple[bool, str]:
    """(identical, report) for two trace files."""
    a, b = read_trace(path_a), read_trace(path_b)
    notes, first = diff_traces(a, b)
    if first is None:
        steps = sum(1 for r in a if r.get("type") == "step")
        return True, f"identical: {steps} steps, {a[0]['ranks']} ranks"
    lines = [f"traces differ; first difference at {first}"]
    lines += [f"  config: {note}" for note in notes]
    return False, "\n".join(lines)
