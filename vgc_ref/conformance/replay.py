"""Replay a training run's compressor inputs through an implementation: ``--replay DIR``.

``python -m mpi_demo train --dump-inputs DIR`` writes every rank's g and s per segment for
the first steps of a run, with the reference's message of every rank and step (format in
docs/trace.md, "Replaying the compressor's inputs"). :func:`replay` feeds them through the
implementation's ``vgc_step`` / ``strom_step`` and ``encode_message`` (the adapter
protocol, :mod:`vgc_ref.conformance.adapter`), one state per rank and segment carried from
step to step as in the demo, and compares every message with the reference's bytes::

    python -m vgc_ref.conformance --replay DIR [--impl MODULE | --backend NAME] [--report PATH]

So an implementation whose model arithmetic differs from the demo's can still be checked,
bit for bit, on real training gradients. The first differing step, rank and segment is
named; exit status 0 all equal, 1 a difference (or the implementation raised on a valid
input), 2 a dump or implementation that cannot be used.

The whole dump is checked by :func:`validate` before the implementation is loaded
(docs/conformance.md, "Replaying a training run", lists the rules): the index's shape and
types, every file it names a plain name of a regular file inside DIR, every array a
float32[n] .npy with finite values (s >= 0), every message of the recorded size and
SHA-256. A dump that breaks one is refused in one line naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vgc_ref._cli import EXIT_USAGE, plain_name_problem, regular_file_problem, say_error
from vgc_ref.conformance.adapter import Impl, load_impl
from vgc_ref.encoding import HEADER, SEGMENT_HEADER, WORD_SIZE
from vgc_ref.packet import MAX_SEGMENT_LEN
from vgc_ref.params import StromParams, VGCParams
from vgc_ref.state import SegmentState

FORMAT = "vgc-demo-inputs"
VERSION = 1
METHODS = ("vgc", "strom", "hybrid")
INDEX = "index.json"
PROG = "python -m vgc_ref.conformance"
#: Version of the replay report's JSON layout (docs/conformance.md, "The replay report").
REPORT_VERSION = 1
#: An index larger than this is not one the demo wrote (it lists a few steps' file names).
MAX_INDEX_BYTES = 64 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ReplayError(ValueError):
    """The dump directory cannot be used: its index, a file it names, or an array or message."""


@dataclass(frozen=True)
class Record:
    """One step and rank of the dump, with its files resolved inside the directory."""

    step: int
    rank: int
    message: Path
    g: tuple[Path, ...]  # one per segment
    s: tuple[Path | None, ...]  # one per segment; None for strom

    @property
    def where(self) -> str:
        return f"step {self.step}, rank {self.rank}"


@dataclass(frozen=True)
class Dump:
    """A validated dump: everything :func:`replay` reads, checked (:func:`validate`)."""

    directory: Path  # resolved
    method: str
    params: VGCParams | StromParams
    names: tuple[str, ...]  # segment names
    sizes: tuple[int, ...]  # segment lengths
    ranks: int
    steps: int  # steps recorded (0 .. steps - 1, every rank)
    records: tuple[Record, ...]  # in (step, rank) order


@dataclass(frozen=True)
class ReplayResult:
    """Messages compared, and the first difference (None when every message is equal).

    ``error`` is True when the difference is the implementation raising on a valid input.
    """

    messages: int
    difference: str | None
    records: int = 0
    where: dict[str, Any] | None = None
    error: bool = False


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


# --------------------------------------------------------------------------------------
# Validation: every rule of docs/conformance.md, "Replaying a training run"
# --------------------------------------------------------------------------------------


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def resolve_file(directory: Path, name: Any, field: str) -> Path:
    """``directory / name`` for a plain file name of a regular file inside ``directory``.

    Refused: a name that is not a non-empty string, that holds a path separator or a NUL,
    that is ``.`` or ``..``; a path whose real path (links followed) leaves ``directory``;
    a missing file; anything that is not a regular file (a directory, a device, a FIFO).
    """
    name_problem = plain_name_problem(name)
    if name_problem == "not a name":
        raise ReplayError(f"{directory / INDEX}: {field} is {name!r}, expected a file name")
    if name_problem:
        raise ReplayError(f"{directory / INDEX}: {field} {name!r} is not a plain file name in {directory}")
    path = directory / name
    problem = regular_file_problem(path, str(directory), directly=True)
    if problem is not None:
        kind, detail = problem
        raise ReplayError(
            {
                "outside": f"{path}: {field} leads outside {directory} (to {detail})",
                "missing": f"{path}: {field}: no such file",
                "unreadable": f"{path}: {field}: cannot read ({detail})",
                "not regular": f"{path}: {field} is not a regular file",
            }[kind]
        )
    return Path(os.path.realpath(path))


def _resolve_directory(directory: str | Path) -> Path:
    if str(directory) == "":
        raise ReplayError("the dump directory is empty; give the directory --dump-inputs wrote")
    path = Path(directory)
    if not path.exists():
        raise ReplayError(f"{path}: no such directory")
    if not path.is_dir():
        raise ReplayError(f"{path}: not a directory")
    return Path(os.path.realpath(path))


def read_index(directory: str | Path) -> dict[str, Any]:
    """The dump's index.json, checked for format, version and method (its shape: :func:`validate`)."""
    root = _resolve_directory(directory)
    path = Path(directory) / INDEX
    try:
        real = resolve_file(root, INDEX, "the index")
        if real.stat().st_size > MAX_INDEX_BYTES:
            raise ReplayError(f"{path}: {real.stat().st_size} bytes, more than any dump's index")
        index = json.loads(real.read_text(encoding="ascii"), parse_constant=_no_constant)
    except ReplayError as err:
        raise ReplayError(f"{path}: cannot read the index ({err})") from err
    except (OSError, ValueError) as err:
        raise ReplayError(f"{path}: cannot read the index ({err})") from err
    if not isinstance(index, dict):
        raise ReplayError(f"{path}: the index is a JSON {type(index).__name__}, expected an object")
    if index.get("format") != FORMAT:
        raise ReplayError(f"{path}: format {index.get('format')!r}, expected {FORMAT!r}")
    if index.get("version") != VERSION or not _is_int(index.get("version")):
        raise ReplayError(f"{path}: version {index.get('version')!r}; this reader knows version {VERSION}")
    if index.get("method") not in METHODS:
        raise ReplayError(f"{path}: method {index.get('method')!r} is not one of {METHODS}")
    return index


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _params(path: Path, method: str, hp: Any) -> VGCParams | StromParams:
    if not isinstance(hp, dict):
        raise ReplayError(f"{path}: params is {hp!r}, expected an object")
    keys = ("tau",) if method == "strom" else ("alpha", "zeta", "tau", "residual")
    for key in keys:
        if key not in hp:
            raise ReplayError(f"{path}: params.{key} is missing (method {method})")
        value = hp[key]
        if key == "residual":
            if not isinstance(value, str):
                raise ReplayError(f"{path}: params.residual is {value!r}, expected a string")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ReplayError(f"{path}: params.{key} is {value!r}, expected a finite number")
    try:
        if method == "strom":
            return StromParams(tau=hp["tau"])
        return VGCParams(alpha=hp["alpha"], zeta=hp["zeta"], tau=hp["tau"], residual=hp["residual"])
    except Exception as err:  # the hyperparameter's own refusal, naming it
        raise ReplayError(f"{path}: params: {err}") from err


def _npy_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, data offset) of a .npy file, read without loading its data."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy version {version}")
        return dtype, tuple(shape), f.tell()


def load_array(path: Path, n: int, what: str, non_negative: bool = False) -> np.ndarray:
    """A float32[n] .npy file, every value finite (and >= 0 when ``non_negative``).

    The header is read first: a wrong dtype or shape, or a file whose size is not the
    header's plus 4 n bytes, is refused before any data is read.
    """
    try:
        dtype, shape, offset = _npy_header(path)
    except (OSError, ValueError) as err:
        raise ReplayError(f"{path}: {what} is not a readable .npy file ({err})") from err
    if dtype != np.dtype("<f4") or shape != (n,):
        raise ReplayError(f"{path}: {what} is {dtype}{list(shape)}, expected float32[{n}] (little-endian)")
    size = path.stat().st_size
    if size != offset + 4 * n:
        raise ReplayError(f"{path}: {what} has {size} bytes, expected {offset + 4 * n} (float32[{n}])")
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ReplayError(f"{path}: {what} cannot be read ({err})") from err
    a = np.ascontiguousarray(a, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        i = int(bad[0])
        raise ReplayError(f"{path}: {what}[{i}] is {float(a[i])!r}; the dump must hold finite values")
    if non_negative:
        neg = np.flatnonzero(a < 0)
        if neg.size:
            i = int(neg[0])
            raise ReplayError(f"{path}: {what}[{i}] is {float(a[i])!r}; s must be >= 0")
    return a


def _read_message(path: Path, size: int | None, sha256: str | None, what: str) -> bytes:
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise ReplayError(f"{path}: {what} has {actual} bytes, the index records {size}")
    data = path.read_bytes()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ReplayError(f"{path}: {what}: SHA-256 differs from the index")
    return data


def validate(directory: str | Path) -> Dump:
    """Check the whole dump, reading every file once; the :class:`Dump` :func:`replay` runs.

    Raises :class:`ReplayError` naming the file and field of the first broken rule.
    """
    index = read_index(directory)
    root = _resolve_directory(directory)
    path = Path(directory) / INDEX
    method = index["method"]
    params = _params(path, method, index.get("params"))
    ranks, steps = index.get("ranks"), index.get("steps")
    for key, value in (("ranks", ranks), ("steps", steps)):
        if not _is_int(value) or value < 1:
            raise ReplayError(f"{path}: {key} is {value!r}, expected an integer >= 1")
    segments = index.get("segments")
    if not isinstance(segments, list) or not segments:
        raise ReplayError(f"{path}: segments is {segments!r}, expected a non-empty list")
    names, sizes = [], []
    for j, seg in enumerate(segments):
        if not isinstance(seg, dict) or not isinstance(seg.get("name"), str):
            raise ReplayError(f"{path}: segments[{j}] is {seg!r}, expected {{'name': str, 'n': int}}")
        n = seg.get("n")
        if not _is_int(n) or not 0 <= n <= MAX_SEGMENT_LEN:
            raise ReplayError(f"{path}: segments[{j}].n is {n!r}, expected an integer in 0..2^27")
        names.append(seg["name"])
        sizes.append(n)
    raw = index.get("records")
    if not isinstance(raw, list):
        raise ReplayError(f"{path}: records is {raw!r}, expected a list")
    if not raw:
        raise ReplayError(f"{path}: records is empty; the dump holds no message to replay")
    records: dict[tuple[int, int], Record] = {}
    used: dict[Path, str] = {}

    def file(name: Any, field: str) -> Path:
        real = resolve_file(root, name, field)
        if real in used:
            raise ReplayError(f"{path}: {field} {name!r} is also {used[real]}")
        used[real] = field
        return real

    for i, rec in enumerate(raw):
        where = f"records[{i}]"
        if not isinstance(rec, dict):
            raise ReplayError(f"{path}: {where} is {rec!r}, expected an object")
        step, rank = rec.get("step"), rec.get("rank")
        if not _is_int(step) or not 0 <= step < steps:
            raise ReplayError(f"{path}: {where}.step is {step!r}, expected an integer in 0..{steps - 1}")
        if not _is_int(rank) or not 0 <= rank < ranks:
            raise ReplayError(f"{path}: {where}.rank is {rank!r}, expected an integer in 0..{ranks - 1}")
        if (step, rank) in records:
            raise ReplayError(f"{path}: {where} repeats step {step}, rank {rank}")
        size, sha = rec.get("bytes"), rec.get("sha256")
        if size is not None and (not _is_int(size) or size < 0):
            raise ReplayError(f"{path}: {where}.bytes is {size!r}, expected an integer >= 0")
        if sha is not None and (not isinstance(sha, str) or not _SHA256.fullmatch(sha)):
            raise ReplayError(f"{path}: {where}.sha256 is {sha!r}, expected 64 lower-case hex digits")
        message = file(rec.get("message"), f"{where}.message")
        segs = rec.get("segments")
        if not isinstance(segs, list) or len(segs) != len(sizes):
            got = len(segs) if isinstance(segs, list) else repr(segs)
            raise ReplayError(f"{path}: {where}.segments: {got} segments, the index names {len(sizes)}")
        g_files, s_files = [], []
        for j, seg in enumerate(segs):
            field = f"{where}.segments[{j}]"
            if not isinstance(seg, dict):
                raise ReplayError(f"{path}: {field} is {seg!r}, expected an object")
            if "segment" in seg and seg["segment"] != j:
                raise ReplayError(f"{path}: {field}.segment is {seg['segment']!r}, expected {j}")
            g_files.append(file(seg.get("g"), f"{field}.g"))
            if method == "strom":
                if seg.get("s") is not None:
                    raise ReplayError(f"{path}: {field}.s is {seg['s']!r}; method strom has no s (null)")
                s_files.append(None)
            else:
                if seg.get("s") is None:
                    raise ReplayError(f"{path}: {field}.s is missing; method {method} needs s")
                s_files.append(file(seg["s"], f"{field}.s"))
        records[(step, rank)] = Record(step, rank, message, tuple(g_files), tuple(s_files))
        # the files' contents: read once here, so that a bad one is refused before any run
        _read_message(message, size, sha, f"{where}.message")
        for j, n in enumerate(sizes):
            load_array(g_files[j], n, f"{where}.segments[{j}].g")
            if s_files[j] is not None:
                load_array(s_files[j], n, f"{where}.segments[{j}].s", non_negative=True)
    recorded = 1 + max(step for step, _ in records)
    for step in range(recorded):
        for rank in range(ranks):
            if (step, rank) not in records:
                raise ReplayError(
                    f"{path}: no record of step {step}, rank {rank}; the records must hold every rank "
                    f"of steps 0..{recorded - 1}, since each rank's state carries from step to step"
                )
    return Dump(
        root,
        method,
        params,
        tuple(names),
        tuple(sizes),
        ranks,
        recorded,
        tuple(records[k] for k in sorted(records)),
    )


# --------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------


def replay(directory: str | Path | Dump, impl: Impl | str | None = None) -> ReplayResult:
    """Feed the dump through ``impl`` and compare every message with the reference's.

    The dump is validated first (:func:`validate`), unless a :class:`Dump` is given.
    Records are taken in (step, rank) order; each rank's segment states start at zero and
    are carried from its step t to its step t + 1. An exception raised by ``impl`` on these
    (valid) inputs is a difference, reported with ``error`` set.
    """
    dump = directory if isinstance(directory, Dump) else validate(directory)
    if not isinstance(impl, Impl):
        impl = load_impl(impl)
    method, params = dump.method, dump.params
    states: dict[int, list[SegmentState]] = {}
    for count, rec in enumerate(dump.records, 1):
        st = states.setdefault(rec.rank, [SegmentState.zeros(n, j) for j, n in enumerate(dump.sizes)])
        ref = _read_message(rec.message, None, None, "message")
        packets = []
        j = None
        try:
            for j in range(len(dump.sizes)):
                g = load_array(rec.g[j], dump.sizes[j], f"segment {j} g")
                if method == "strom":
                    packets.append(impl.strom_step(st[j], g, params))
                else:
                    s = load_array(rec.s[j], dump.sizes[j], f"segment {j} s", non_negative=True)
                    packets.append(impl.vgc_step(st[j], g, s, params))
            j = None
            ours = bytes(impl.encode_message(packets))
        except ReplayError:
            raise
        except Exception as err:  # the implementation under test raised on a valid input
            seg = f", segment {j} ({dump.names[j]})" if j is not None else ", encode_message"
            where = {"step": rec.step, "rank": rec.rank, "segment": j}
            return ReplayResult(
                count,
                f"at {rec.where}{seg} the implementation raised {type(err).__name__}: {err}",
                len(dump.records),
                where,
                error=True,
            )
        if ours != ref:
            j = _first_segment(ours, ref)
            seg = f", segment {j} ({dump.names[j]})" if j is not None else ""
            what = f"message {len(ours)} vs {len(ref)} bytes (reference)"
            where = {"step": rec.step, "rank": rec.rank, "segment": j}
            return ReplayResult(
                count, f"first difference at {rec.where}{seg}: {what}", len(dump.records), where
            )
    return ReplayResult(len(dump.records), None, len(dump.records))


def _report_doc(dump: Dump, impl: Impl, result: ReplayResult, started: float) -> dict[str, Any]:
    """The replay report (docs/conformance.md, "The replay report")."""
    results = []
    for i, rec in enumerate(dump.records, 1):
        entry: dict[str, Any] = {"id": rec.where, "step": rec.step, "rank": rec.rank}
        if i < result.messages or (i == result.messages and result.difference is None):
            entry["outcome"] = "passed"
        elif i == result.messages:
            entry["outcome"] = "error" if result.error else "failed"
            entry["message"] = result.difference
            entry["segment"] = (result.where or {}).get("segment")
        else:
            entry["outcome"] = "skipped"
            entry["message"] = "not compared: replay stops at the first difference"
        results.append(entry)
    outcomes = ("passed", "failed", "error", "skipped")
    summary = {k: sum(1 for e in results if e["outcome"] == k) for k in outcomes}
    return {
        "report_version": REPORT_VERSION,
        "kind": "replay",
        "impl": impl.name,
        "missing_operations": list(impl.missing),
        "borrowed_operations": list(impl.borrowed),
        "dump": {
            "directory": str(dump.directory),
            "method": dump.method,
            "ranks": dump.ranks,
            "steps": dump.steps,
            "segments": [{"name": a, "n": n} for a, n in zip(dump.names, dump.sizes)],
        },
        "python": platform.python_version(),
        "duration_s": round(time.time() - started, 3),
        "summary": summary,
        "passed": result.difference is None,
        "difference": result.difference,
        "results": results,
    }


def _write_report(path: str, doc: dict[str, Any]) -> None:
    """Written aside and renamed into place, so a reader never sees half a report."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, target)


def _error(message: str) -> int:
    """One line ``PROG: error: MESSAGE`` on stderr (vgc_ref._cli's form); exit status 2."""
    say_error(PROG, message)
    return EXIT_USAGE


def main(directory: str, impl_spec: str | None, report: str | None = None) -> int:
    """The ``--replay DIR`` command: validate, replay, print the outcome; the exit status.

    Every refusal (exit status 2) is one line on stderr, before the implementation is
    loaded: the dump is validated first, then the report path is checked against the
    dump's own files.
    """
    started = time.time()
    try:
        dump = validate(directory)
    except ReplayError as err:
        return _error(f"--replay: {err}")
    if report is not None:
        own = [dump.directory / INDEX] + [r.message for r in dump.records]
        own += [p for r in dump.records for p in (*r.g, *r.s) if p is not None]
        if any(os.path.realpath(report) == str(p) for p in own):
            return _error(f"--report {report!r}: is a file of the dump {directory}; give another path")
    try:
        impl = load_impl(impl_spec)
    except Exception as err:  # the module under test fails to import: its error, in one line
        return _error(f"cannot load the implementation {impl_spec!r}: {type(err).__name__}: {err}")
    result = replay(dump, impl)
    if report is not None:
        try:
            _write_report(report, _report_doc(dump, impl, result, started))
        except OSError as err:
            return _error(f"--report {report!r}: cannot write it ({err.strerror or err})")
    if result.difference is None:
        print(f"replay {directory} with {impl.name}: all {result.messages} messages identical")
        return 0
    print(f"replay {directory} with {impl.name}: {result.difference}")
    return 1
