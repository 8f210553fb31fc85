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
segment sizes, configuration, the step within the run and the sample order; and
:func:`check_consistent` checks its parts against each other and against the trace it
carries: the step, epoch and order, the counters, the parameters' digest and test
accuracy, the compressor state's zeros against the last step's sent counts.
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


@dataclass(frozen=True)
class RunFacts:
    """What the resuming run knows that a checkpoint's content must agree with.

    ``header`` is the trace header line this run writes; ``order_of(e)`` the sample order
    of epoch e; ``initial()`` the initial parameters; ``test_accuracy(params)`` the test
    accuracy of parameters (step 12 of docs/demo.md), None where it may differ from the
    writer's (``--products blas``: another machine's BLAS).
    """

    header: str
    ranks: int
    steps_per_epoch: int
    total: int
    batch: int
    checksum_every: int
    n_params: int
    method: str
    residual: str
    order_of: Any
    initial: Any
    test_accuracy: Any


def _records(ckpt: Checkpoint, source: str) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(ckpt.trace_lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{source}: trace line {number} is not valid JSON ({err})") from err
        if not isinstance(record, dict):
            raise CheckpointError(f"{source}: trace line {number} is not a JSON object")
        records.append(record)
    return records


def expected_records(step: int, facts: RunFacts) -> list[tuple[str, int | None]]:
    """(type, step) of every trace record a run has written after ``step`` steps (docs/trace.md)."""
    out: list[tuple[str, int | None]] = [("header", None)]
    for t in range(step):
        out.append(("step", t))
        if (t + 1) % facts.checksum_every == 0:
            out.append(("params", t))
        if t % facts.steps_per_epoch == facts.steps_per_epoch - 1 or t == facts.total - 1:
            out.append(("eval", t))
    return out


def check_consistent(ckpt: Checkpoint, facts: RunFacts, source: str) -> None:
    """Refuse a checkpoint whose parts disagree with each other, naming what disagrees.

    See :func:`_check_consistent`; a trace record that lacks a field the checks read is
    refused as malformed.
    """
    try:
        _check_consistent(ckpt, facts, source)
    except (KeyError, TypeError, IndexError, AttributeError) as err:
        raise CheckpointError(f"{source}: malformed trace record in the checkpoint ({err!r})") from err


def _check_consistent(ckpt: Checkpoint, facts: RunFacts, source: str) -> None:
    """The cross-checks of :func:`check_consistent`.

    Run after :func:`check_compatible`. Every check compares two things the checkpoint
    holds (or one it holds with one the run computes from the configuration), so an edit
    that leaves a valid file but breaks one of these relations is refused:

    1. the trace: its header is this run's; it holds, in order, exactly the records of
       steps 0 .. step-1 (step, params every ``checksum_every``, eval at epoch ends);
    2. the step: ``epoch`` is the epoch of the last step done, ``order`` that epoch's order;
    3. the counters: steps, message and dense bytes, elements sent and in all, the last
       loss are the trace's sums over its step records; the epoch's samples seen follow
       from the step; its loss sum agrees with the step losses (relative 1e-9); at an
       epoch's end its correct count gives the eval record's train accuracy;
    4. the parameters: the SHA-256 of the params record of the last step, where the trace
       has one; the test accuracy of the eval record, at an epoch's end; the initial
       parameters (and zero momentum, r and v) at step 0;
    5. the compressor state against the last step's sent counts per rank and segment: a
       sent element's v is reset to 0 (vgc, hybrid), and its r too with ``reset``; v is
       never used by strom and topk, neither r nor v by none.

    What no record pins is not checked: momentum (no digest), parameters after a step
    with neither a params nor an eval record, r under feedback (no digest), the correct
    count within an epoch. docs/demo.md "Checkpoints" lists these.
    """
    step, ranks = ckpt.step, facts.ranks
    records = _records(ckpt, source)
    if not records or ckpt.trace_lines[0] != facts.header:
        raise CheckpointError(f"{source}: trace line 1 is not the trace header of this run")
    steps = [r for r in records if r.get("type") == "step"]
    if len(steps) != step:
        raise CheckpointError(
            f"{source}: header field step = {step}, but its trace holds {len(steps)} step records"
        )
    for number, ((kind, t), record) in enumerate(zip(expected_records(step, facts), records), 1):
        if record.get("type") != kind or (t is not None and record.get("step") != t):
            raise CheckpointError(
                f"{source}: trace line {number} is a {record.get('type')} record of step "
                f"{record.get('step')}; a run after {step} steps has the {kind} record of step {t} there"
            )
    if len(records) != len(expected_records(step, facts)):
        raise CheckpointError(
            f"{source}: its trace has {len(records)} records; a run after {step} steps has "
            f"{len(expected_records(step, facts))}"
        )
    spe = facts.steps_per_epoch
    for r in steps:
        if (
            r.get("epoch") != r["step"] // spe
            or not isinstance(r.get("ranks"), list)
            or len(r["ranks"]) != ranks
        ):
            raise CheckpointError(
                f"{source}: trace record of step {r['step']}: epoch or ranks not this run's"
            )

    # 2. the step against the epoch and its sample order
    epoch = (step - 1) // spe if step else -1
    if ckpt.epoch != epoch:
        raise CheckpointError(
            f"{source}: header field epoch = {ckpt.epoch}: after step {step} the run is in epoch {epoch}"
        )
    if epoch >= 0 and not np.array_equal(ckpt.order, facts.order_of(epoch)):
        raise CheckpointError(f"{source}: array order: not the sample order of epoch {epoch}")

    # 3. the counters against the trace's step records
    _check_counters(ckpt, facts, steps, records, source)

    # 4. the parameters
    if step == 0:
        for name, arrays in (("params", ckpt.params), ("momentum", ckpt.momentum)):
            initial = facts.initial() if name == "params" else [np.zeros_like(p) for p in ckpt.params]
            for j, (a, b) in enumerate(zip(arrays, initial)):
                if a.tobytes() != b.tobytes():
                    raise CheckpointError(
                        f"{source}: array {name}/{j}: not the initial value a run has at step 0"
                    )
    last = {(r.get("type"), r.get("step")): r for r in records}
    digest = last.get(("params", step - 1))
    if digest is not None:
        from mpi_demo.trace import sha256

        for j, p in enumerate(ckpt.params):
            if sha256(p) != digest["sha256"][j]:
                raise CheckpointError(
                    f"{source}: array params/{j}: SHA-256 differs from the trace's params record "
                    f"of step {step - 1}"
                )
    evaluation = last.get(("eval", step - 1))
    if evaluation is not None and facts.test_accuracy is not None:
        accuracy = facts.test_accuracy(ckpt.params)
        if accuracy != evaluation["test_accuracy"]:
            raise CheckpointError(
                f"{source}: arrays params: test accuracy {accuracy!r}; the trace's eval record of "
                f"step {step - 1} says {evaluation['test_accuracy']!r}"
            )

    # 5. the compressor state against the last step's sent counts
    _check_state(ckpt, facts, steps[-1] if steps else None, source)


def _check_counters(ckpt, facts: RunFacts, steps, records, source: str) -> None:
    c, step, ranks, spe = ckpt.counters, ckpt.step, facts.ranks, facts.steps_per_epoch
    try:
        message_bytes = sum(m["bytes"] for r in steps for m in r["ranks"])
        sent = sum(sum(m["sent"]) for r in steps for m in r["ranks"])
        losses = [r["loss"] for r in steps]
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{source}: a trace step record lacks its fields ({err!r})") from err
    in_epoch = (step - 1) % spe + 1 if step else 0
    expected = {
        "steps": (step, "header field step"),
        "message_bytes": (message_bytes, "sum of the trace's message bytes"),
        "sent": (sent, "sum of the trace's sent counts"),
        "dense_bytes": (step * ranks * 4 * facts.n_params, "steps x ranks x 4 x parameters"),
        "elements": (step * ranks * facts.n_params, "steps x ranks x parameters"),
        "epoch_seen": (in_epoch * facts.batch, f"epoch's {in_epoch} steps x batch"),
    }
    for key, (value, what) in expected.items():
        if c[key] != value:
            raise CheckpointError(f"{source}: counter {key} = {c[key]!r}, but the {what} = {value!r}")
    last_loss = losses[-1] if losses else float("nan")
    if not (c["last_loss"] == last_loss or (step == 0 and c["last_loss"] != c["last_loss"])):
        raise CheckpointError(
            f"{source}: counter last_loss = {c['last_loss']!r}; "
            f"the trace's last step record says {last_loss!r}"
        )
    if c["epoch_correct"] > c["epoch_seen"]:
        raise CheckpointError(
            f"{source}: counter epoch_correct = {c['epoch_correct']}: "
            f"more than epoch_seen = {c['epoch_seen']}"
        )
    epoch_losses = [loss * facts.batch for loss in losses[step - in_epoch :]]
    scale = sum(abs(x) for x in epoch_losses) + 1e-300
    if abs(c["epoch_loss"] - sum(epoch_losses)) > 1e-9 * scale:
        raise CheckpointError(
            f"{source}: counter epoch_loss = {c['epoch_loss']!r}; the trace's losses of the epoch's "
            f"{in_epoch} steps x batch sum to {sum(epoch_losses)!r}"
        )
    evaluation = next((r for r in records if r.get("type") == "eval" and r.get("step") == step - 1), None)
    if evaluation is not None and c["epoch_seen"]:
        accuracy = c["epoch_correct"] / c["epoch_seen"]
        if accuracy != evaluation.get("train_accuracy"):
            raise CheckpointError(
                f"{source}: counter epoch_correct = {c['epoch_correct']}: train accuracy {accuracy!r}; "
                f"the trace's eval record of step {step - 1} says {evaluation.get('train_accuracy')!r}"
            )


def _check_state(ckpt, facts: RunFacts, last_step, source: str) -> None:
    for w in range(facts.ranks):
        for j in range(len(ckpt.params)):
            r, v = ckpt.r[w][j], ckpt.v[w][j]
            zero_r = facts.method == "none" or last_step is None
            zero_v = zero_r or facts.method in ("strom", "topk")
            if zero_r and np.any(r != 0):
                raise CheckpointError(
                    f"{source}: array r/{w}/{j}: must be 0 (method {facts.method}, step {ckpt.step})"
                )
            if zero_v and np.any(v != 0):
                raise CheckpointError(
                    f"{source}: array v/{w}/{j}: must be 0 (method {facts.method}, step {ckpt.step})"
                )
            if facts.method not in ("vgc", "hybrid") or last_step is None:
                continue
            sent = last_step["ranks"][w]["sent"][j]
            if facts.residual == "reset":
                zeros, name, what = int(np.count_nonzero((v == 0) & (r == 0))), "r", "r and v are"
            else:
                zeros, name, what = int(np.count_nonzero(v == 0)), "v", "v is"
            if zeros < sent:
                raise CheckpointError(
                    f"{source}: array {name}/{w}/{j}: {zeros} elements are 0, but the trace's step "
                    f"{ckpt.step - 1} says rank {w} sent {sent} of segment {j} (a sent element's {what} 0)"
                )
