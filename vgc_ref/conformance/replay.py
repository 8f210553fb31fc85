"""Replay a training run's compressor inputs through an implementation: ``--replay DIR``.

``python -m mpi_demo train --dump-inputs DIR`` writes every rank's g and s per segment for
the first steps of a run, with the reference's message of every rank and step (format in
docs/trace.md, "Replaying the compressor's inputs"). :func:`replay` feeds them through the
implementation's ``vgc_step`` / ``strom_step`` and ``encode_message`` (the adapter
protocol, :mod:`vgc_ref.conformance.adapter`), one state per rank and segment carried from
step to step as in the demo, and compares every message with the reference's bytes::

    python -m vgc_ref.conformance --replay DIR [--impl MODULE | --backend NAME]

So an implementation whose model arithmetic differs from the demo's can still be checked,
bit for bit, on real training gradients. The first differing step, rank and segment is
named; exit status 0 all equal, 1 a difference, 2 an unreadable directory or
implementation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vgc_ref.conformance.adapter import Impl, load_impl
from vgc_ref.encoding import HEADER, SEGMENT_HEADER, WORD_SIZE
from vgc_ref.params import StromParams, VGCParams
from vgc_ref.state import SegmentState

FORMAT = "vgc-demo-inputs"
VERSION = 1
METHODS = ("vgc", "strom", "hybrid")


class ReplayError(ValueError):
    """The dump directory cannot be read: missing index or file, other format or version."""


@dataclass(frozen=True)
class ReplayResult:
    """Messages compared, and the first difference (None when every message is equal)."""

    messages: int
    difference: str | None


def _spans(message: bytes) -> list[tuple[int, int]] | None:
    """[start, stop) of every segment in a message (docs/format.md), or None if unparseable."""
    try:
        n_segments = HEADER.unpack_from(message, 0)[-1]
        spans, start = [], HEADER.size
        for _ in range(n_segments):
            count = SEGMENT_HEADER.unpack_from(message, start)[-1]
            stop = start + SEGMENT_HEADER.size + WORD_SIZE * count
            spans.append((start, stop))
            start = stop
        return spans
    except Exception:
        return None


def _first_segment(ours: bytes, ref: bytes) -> int | None:
    a, b = _spans(ours), _spans(ref)
    if a is None or b is None:
        return None
    for j, (sa, sb) in enumerate(zip(a, b)):
        if ours[sa[0] : sa[1]] != ref[sb[0] : sb[1]]:
            return j
    return None


def read_index(directory: str | Path) -> dict[str, Any]:
    """The dump's index.json, checked for format, version and method."""
    path = Path(directory) / "index.json"
    try:
        index = json.loads(path.read_text(encoding="ascii"))
    except (OSError, ValueError) as err:
        raise ReplayError(f"{path}: cannot read the index ({err})") from err
    if index.get("format") != FORMAT:
        raise ReplayError(f"{path}: format {index.get('format')!r}, expected {FORMAT!r}")
    if index.get("version") != VERSION:
        raise ReplayError(f"{path}: version {index.get('version')!r}; this reader knows version {VERSION}")
    if index.get("method") not in METHODS:
        raise ReplayError(f"{path}: method {index.get('method')!r} is not one of {METHODS}")
    return index


def _load(directory: Path, name: str, n: int) -> np.ndarray:
    try:
        a = np.load(directory / name, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ReplayError(f"{directory / name}: cannot read ({err})") from err
    if a.dtype != np.float32 or a.shape != (n,):
        raise ReplayError(f"{directory / name}: {a.dtype}{list(a.shape)}, expected float32[{n}]")
    return a


def replay(directory: str | Path, impl: Impl | str | None = None) -> ReplayResult:
    """Feed the dump through ``impl`` and compare every message with the reference's.

    Records are taken in (step, rank) order; each rank's segment states start at zero and
    are carried from its step t to its step t + 1.
    """
    directory = Path(directory)
    index = read_index(directory)
    if not isinstance(impl, Impl):
        impl = load_impl(impl)
    method, hp = index["method"], index["params"]
    if method == "strom":
        params = StromParams(tau=hp["tau"])
    else:
        params = VGCParams(alpha=hp["alpha"], zeta=hp["zeta"], tau=hp["tau"], residual=hp["residual"])
    names = [seg["name"] for seg in index["segments"]]
    sizes = [int(seg["n"]) for seg in index["segments"]]
    states: dict[int, list[SegmentState]] = {}
    records = sorted(index["records"], key=lambda r: (r["step"], r["rank"]))
    for count, rec in enumerate(records, 1):
        step, rank = rec["step"], rec["rank"]
        where = f"step {step}, rank {rank}"
        st = states.setdefault(rank, [SegmentState.zeros(n, j) for j, n in enumerate(sizes)])
        if len(rec["segments"]) != len(sizes):
            raise ReplayError(f"{where}: {len(rec['segments'])} segments, the index names {len(sizes)}")
        ref = (directory / rec["message"]).read_bytes()
        if hashlib.sha256(ref).hexdigest() != rec["sha256"]:
            raise ReplayError(f"{directory / rec['message']}: SHA-256 differs from the index")
        packets = []
        for j, seg in enumerate(rec["segments"]):
            g = _load(directory, seg["g"], sizes[j])
            if method == "strom":
                packets.append(impl.strom_step(st[j], g, params))
            else:
                if seg["s"] is None:
                    raise ReplayError(f"{where}, segment {j}: method {method} needs s, the index has none")
                packets.append(impl.vgc_step(st[j], g, _load(directory, seg["s"], sizes[j]), params))
        ours = bytes(impl.encode_message(packets))
        if ours != ref:
            j = _first_segment(ours, ref)
            seg = f", segment {j} ({names[j]})" if j is not None else ""
            what = f"message {len(ours)} vs {len(ref)} bytes (reference)"
            return ReplayResult(count, f"first difference at {where}{seg}: {what}")
    return ReplayResult(len(records), None)


def main(directory: str, impl_spec: str | None) -> int:
    """The ``--replay DIR`` command: print the outcome, return the exit status."""
    try:
        impl = load_impl(impl_spec)
    except ImportError as err:
        print(f"vgc_ref.conformance: cannot load the implementation: {err}")
        return 2
    try:
        result = replay(directory, impl)
    except ReplayError as err:
        print(f"vgc_ref.conformance --replay: error: {err}")
        return 2
    if result.difference is None:
        print(f"replay {directory} with {impl.name}: all {result.messages} messages identical")
        return 0
    print(f"replay {directory} with {impl.name}: {result.difference}")
    return 1
