"""Checkpoints: everything needed to continue a run bit for bit, written atomically.

A checkpoint holds the parameters, the momentum, every rank's VGC state (r and v of
every segment), the number of completed steps, the current epoch's sample order, the
run's counters and the trace lines written so far (so that a resumed run's trace equals
an uninterrupted run's).

File layout (all integers little-endian)::

    offset  width  field
    0       8      magic b"VGCDCKPT"
    8       4      u32 format version (1)
    12      4      u32 header length H
    16      H      header: UTF-8 JSON (configuration, ranks, step, counters, array table)
    16+H    ...    the arrays' bytes, in the order and at the offsets of the array table
    end-32  32     SHA-256 of every byte before it

Writing goes to a temporary file in the same directory, which is flushed, fsync'ed and
then renamed over the target (``os.replace``), so a failed or interrupted write never
destroys the previous checkpoint. A temporary file left by a process that was killed
mid-write (``.NAME.tmp-PID`` whose PID no longer runs) is removed by the next write.

Reading checks the bytes (magic, version, lengths, SHA-256) and then the content, field
by field, since a digest only says the file is as written, not that it makes sense: the
array table names exactly the arrays of ``ranks`` and ``segments``, each with its dtype
and shape; parameters, momentum, r and v are finite; v >= 0; the counters are the
run's. :func:`check_compatible` then checks it against the run that resumes it: ranks,
segment sizes, configuration, the step within the run and the sample order.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"VGCDCKPT"
VERSION = 1
PREFIX = struct.Struct("<8sII")  # magic, version, header length
DIGEST_SIZE = 32


class CheckpointError(ValueError):
    """A checkpoint cannot be used: corrupt, truncated, another version, or another job."""


@dataclass
class Checkpoint:
    """The state of a run after ``step`` completed steps (see the module docstring)."""

    config: dict[str, Any]
    ranks: int
    step: int
    epoch: int  # the epoch ``order`` belongs to
    order: np.ndarray  # int64[n_train]
    params: list[np.ndarray]  # float32[n] per segment
    momentum: list[np.ndarray]  # float32[n] per segment
    r: list[list[np.ndarray]]  # [rank][segment] float32[n]
    v: list[list[np.ndarray]]  # [rank][segment] float32[n]
    counters: dict[str, Any] = field(default_factory=dict)
    trace_lines: list[str] = field(default_factory=list)


def _arrays(ckpt: Checkpoint) -> list[tuple[str, np.ndarray]]:
    arrays = [("order", ckpt.order.astype("<i8"))]
    arrays += [(f"params/{j}", p) for j, p in enumerate(ckpt.params)]
    arrays += [(f"momentum/{j}", m) for j, m in enumerate(ckpt.momentum)]
    for w in range(ckpt.ranks):
        arrays += [(f"r/{w}/{j}", x) for j, x in enumerate(ckpt.r[w])]
        arrays += [(f"v/{w}/{j}", x) for j, x in enumerate(ckpt.v[w])]
    trace = "".join(ckpt.trace_lines).encode("ascii")
    arrays.append(("trace", np.frombuffer(trace, np.uint8)))
    return [(name, np.ascontiguousarray(a, a.dtype.newbyteorder("<"))) for name, a in arrays]


def to_bytes(ckpt: Checkpoint) -> bytes:
    """The checkpoint file's bytes."""
    arrays = _arrays(ckpt)
    table, offset = [], 0
    for name, a in arrays:
        table.append(
            {"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset, "nbytes": a.nbytes}
        )
        offset += a.nbytes
    header = {
        "config": ckpt.config,
        "ranks": ckpt.ranks,
        "step": ckpt.step,
        "epoch": ckpt.epoch,
        "segments": [int(p.size) for p in ckpt.params],
        "counters": ckpt.counters,
        "arrays": table,
    }
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    body = b"".join([PREFIX.pack(MAGIC, VERSION, len(head)), head, *(a.tobytes() for _, a in arrays)])
    return body + hashlib.sha256(body).digest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # someone else's live process (or a PID that cannot be asked about)
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove ``.NAME.tmp-PID`` files of ``path`` whose writer no longer runs; return them."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                tmp.unlink()
            except OSError:
                continue
            removed.append(tmp)
    return removed


def save(path: str | Path, ckpt: Checkpoint) -> None:
    """Write atomically: temporary file, flush, fsync, ``os.replace``; the old file survives any failure.

    Temporary files of earlier writers that were killed mid-write are removed first.
    """
    path = Path(path)
    data = to_bytes(ckpt)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def from_bytes(data: bytes, source: str = "checkpoint") -> Checkpoint:
    """Parse and verify a checkpoint's bytes; raise CheckpointError naming the problem."""
    try:
        return _from_bytes(data, source)
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{source}: malformed header or array table ({err!r})") from err


def _from_bytes(data: bytes, source: str) -> Checkpoint:
    if len(data) < PREFIX.size + DIGEST_SIZE:
        raise CheckpointError(f"{source}: truncated ({len(data)} bytes; a checkpoint has at least 48)")
    magic, version, head_len = PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise CheckpointError(f"{source}: byte 0: magic {magic!r}, expected {MAGIC!r} (not a checkpoint)")
    if version != VERSION:
        raise CheckpointError(
            f"{source}: byte 8: format version {version}; this program reads version {VERSION}"
        )
    body_end = len(data) - DIGEST_SIZE
    if PREFIX.size + head_len > body_end:
        raise CheckpointError(f"{source}: byte 12: header length {head_len} runs past the end (truncated?)")
    if hashlib.sha256(data[:body_end]).digest() != data[body_end:]:
        raise CheckpointError(
            f"{source}: byte {body_end}: SHA-256 mismatch; the file is corrupt or truncated"
        )
    try:
        header = json.loads(data[PREFIX.size : PREFIX.size + head_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{source}: byte 16: header is not valid JSON ({err})") from err
    start = PREFIX.size + head_len
    arrays: dict[str, np.ndarray] = {}
    expected = 0
    for entry in header["arrays"]:
        if entry["offset"] != expected or start + expected + entry["nbytes"] > body_end:
            raise CheckpointError(f"{source}: array {entry['name']}: bad offset or size")
        raw = data[start + expected : start + expected + entry["nbytes"]]
        a = np.frombuffer(raw, np.dtype(entry["dtype"])).reshape(entry["shape"])
        arrays[entry["name"]] = a.astype(a.dtype.newbyteorder("="))  # native, writeable copy
        expected += entry["nbytes"]
    if start + expected != body_end:
        raise CheckpointError(f"{source}: {body_end - start - expected} unexplained bytes after the arrays")
    _check_content(header, arrays, source)
    ranks, n_seg = header["ranks"], len(header["segments"])
    return Checkpoint(
        config=header["config"],
        ranks=ranks,
        step=header["step"],
        epoch=header["epoch"],
        order=arrays["order"].astype(np.int64),
        params=[arrays[f"params/{j}"] for j in range(n_seg)],
        momentum=[arrays[f"momentum/{j}"] for j in range(n_seg)],
        r=[[arrays[f"r/{w}/{j}"] for j in range(n_seg)] for w in range(ranks)],
        v=[[arrays[f"v/{w}/{j}"] for j in range(n_seg)] for w in range(ranks)],
        counters=header["counters"],
        trace_lines=arrays["trace"].tobytes().decode("ascii").splitlines(keepends=True),
    )


#: The counters a checkpoint carries (mpi_demo.train.Counters), and their types.
COUNTERS = {
    "message_bytes": int,
    "dense_bytes": int,
    "sent": int,
    "elements": int,
    "steps": int,
    "last_loss": float,
    "epoch_loss": float,
    "epoch_correct": int,
    "epoch_seen": int,
}


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_content(header: dict[str, Any], arrays: dict[str, np.ndarray], source: str) -> None:
    """The header's fields and every array's name, dtype, shape and values (module docstring)."""
    ranks, step, epoch, segments = header["ranks"], header["step"], header["epoch"], header["segments"]
    if not (_is_int(ranks) and ranks >= 1):
        raise CheckpointError(f"{source}: header field ranks = {ranks!r}: must be an integer >= 1")
    if not (_is_int(step) and step >= 0):
        raise CheckpointError(f"{source}: header field step = {step!r}: must be an integer >= 0")
    if not (_is_int(epoch) and epoch >= -1):
        raise CheckpointError(f"{source}: header field epoch = {epoch!r}: must be an integer >= -1")
    if not (isinstance(segments, list) and segments and all(_is_int(n) and n >= 1 for n in segments)):
        raise CheckpointError(f"{source}: header field segments = {segments!r}: must list sizes >= 1")
    if not isinstance(header["config"], dict):
        raise CheckpointError(f"{source}: header field config: must be a JSON object")
    counters = header["counters"]
    if not isinstance(counters, dict) or set(counters) != set(COUNTERS):
        raise CheckpointError(f"{source}: header field counters: must hold exactly {', '.join(COUNTERS)}")
    for key, kind in COUNTERS.items():
        value = counters[key]
        ok = _is_int(value) and value >= 0 if kind is int else isinstance(value, (int, float))
        if not ok:
            raise CheckpointError(f"{source}: counter {key} = {value!r}: must be a {kind.__name__}")

    # name -> (dtype, shape, finite and v >= 0 checked)
    want: dict[str, tuple[str, tuple[int, ...] | None]] = {"order": ("<i8", None), "trace": ("|u1", None)}
    for j, n in enumerate(segments):
        want[f"params/{j}"] = want[f"momentum/{j}"] = ("<f4", (n,))
        for w in range(ranks):
            want[f"r/{w}/{j}"] = want[f"v/{w}/{j}"] = ("<f4", (n,))
    if set(arrays) != set(want):
        missing = sorted(set(want) - set(arrays))
        extra = sorted(set(arrays) - set(want))
        raise CheckpointError(
            f"{source}: array table does not match ranks = {ranks}, segments = {segments}: "
            + (f"missing {', '.join(missing[:4])}" if missing else f"unexpected {', '.join(extra[:4])}")
        )
    table = {entry["name"]: entry for entry in header["arrays"]}
    for name, (dtype, shape) in want.items():
        a = arrays[name]
        if np.dtype(table[name]["dtype"]) != np.dtype(dtype):
            raise CheckpointError(
                f"{source}: array {name}: dtype {table[name]['dtype']!r}, expected {dtype!r}"
            )
        if a.ndim != 1 or (shape is not None and a.shape != shape):
            raise CheckpointError(
                f"{source}: array {name}: shape {list(a.shape)}, expected {list(shape or ('n',))}"
            )
        if dtype == "<f4":
            bad = np.flatnonzero(~np.isfinite(a))
            if bad.size:
                i = int(bad[0])
                raise CheckpointError(f"{source}: array {name}: element {i} is {a[i]!r}; must be finite")
            if name.startswith("v/"):
                neg = np.flatnonzero(a < 0)
                if neg.size:
                    i = int(neg[0])
                    raise CheckpointError(f"{source}: array {name}: element {i} is {a[i]!r}; v must be >= 0")
    if epoch == -1 and arrays["order"].size:
        raise CheckpointError(f"{source}: array order: must be empty when epoch = -1")
    try:
        arrays["trace"].tobytes().decode("ascii")
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{source}: array trace: not ASCII text ({err})") from err


def load(path: str | Path) -> Checkpoint:
    """Read and verify a checkpoint file."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read ({err.strerror})") from err
    return from_bytes(data, str(path))


def check_compatible(
    ckpt: Checkpoint,
    config: dict[str, Any],
    ranks: int,
    sizes: list[int],
    source: str,
    total: int | None = None,
    n_train: int | None = None,
) -> None:
    """Refuse a checkpoint of another job: other rank count, model or configuration.

    With ``total`` (the run's number of steps), the step must lie in 0 .. total; with
    ``n_train``, a saved sample order must be a permutation of the n_train samples.
    """
    if ckpt.ranks != ranks:
        raise CheckpointError(f"{source}: written by a job of {ckpt.ranks} ranks; this job has {ranks}")
    seg = [int(p.size) for p in ckpt.params]
    if seg != list(sizes):
        raise CheckpointError(f"{source}: segment sizes {seg} differ from this model's {list(sizes)}")
    for key in dict.fromkeys([*ckpt.config, *config]):
        if ckpt.config.get(key) != config.get(key):
            raise CheckpointError(
                f"{source}: written with {key} = {ckpt.config.get(key)!r}; this run has {config.get(key)!r}"
            )
    if total is not None and not 0 <= ckpt.step <= total:
        raise CheckpointError(f"{source}: header field step = {ckpt.step}: this run has {total} steps")
    if n_train is not None and ckpt.epoch >= 0:
        order = ckpt.order
        if order.shape != (n_train,) or not np.array_equal(np.sort(order), np.arange(n_train)):
            raise CheckpointError(
                f"{source}: array order: must be a permutation of the {n_train} training samples"
            )
