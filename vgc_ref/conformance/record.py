"""The deterministic layer's cases as plain values: what the golden vectors of kind ``calls``
are made of.

Every case of :mod:`vgc_ref.conformance.table` is one or a few calls of the implementation
under test. :func:`record` runs a case with the reference standing in for the
implementation and writes down each call: the operation, its arguments as they were before
the call, and what came of it (the result, or the error with the attributes the kit
compares, and the state or outputs after it). A call whose arguments are all plain values
(float32 and uint32 arrays in C order, byte strings, integers, strings, hyperparameters,
lists of these) can be replayed by a program in any language; a call that needs a Python
object to show its point (a strided view, a read-only array, a memoryview, an argument of
the wrong type, ``out`` arrays handed back) cannot, and :func:`python_only` says why.

So the golden vectors and the kit's table come from one list of cases: a case added to the
table becomes a vector by itself, unless it shows a Python-only rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import vgc_ref as ref
from vgc_ref.conformance.adapter import OPERATIONS, Impl
from vgc_ref.conformance.compare import ERROR_ATTRIBUTES
from vgc_ref.packet import Packet
from vgc_ref.params import StromParams, VGCParams
from vgc_ref.state import SegmentState

#: The argument names of each operation, in call order (docs/conformance.md, the protocol).
SIGNATURES = {
    "vgc_step": ("state", "g", "s", "params"),
    "strom_step": ("state", "g", "params"),
    "encode_message": ("packets",),
    "decode_message": ("data",),
    "decode_accumulate": ("messages", "sizes", "out"),
    "dense_grad_var": ("x", "delta"),
    "conv_grad_var": ("patches", "delta", "form"),
}


#: Arrays longer than this are not written as vectors (nor copied while recording): a case
#: that needs them (a segment of 2^27 elements) is Python-only, and the sparse steps case
#: ``max_index`` holds those bits.
LARGEST_VECTOR = 1 << 22


@dataclass
class Call:
    """One recorded call: ``args`` as given (copied before the call), and its outcome."""

    op: str
    args: dict
    result: object = None
    error: BaseException | None = None
    #: For a step: the state's (r, v) after the call (unchanged when it raised).
    state_after: tuple | None = None


@dataclass
class Recording:
    case_id: str
    calls: list[Call] = field(default_factory=list)


def _snapshot(x):
    """A deep copy of an argument that keeps its type, dtype, strides and flags."""
    if isinstance(x, np.ndarray):
        if x.size > LARGEST_VECTOR:
            return x  # too large for a vector: as_values() reports it; never replayed
        if x.base is not None and not x.flags.c_contiguous:
            return x  # a strided view: python_only() reports it; never replayed
        y = x.copy()
        y.setflags(write=x.flags.writeable)
        return y
    if isinstance(x, SegmentState):
        if x.r.size > LARGEST_VECTOR:
            return x
        return SegmentState(x.segment_id, x.r.copy(), x.v.copy())
    if isinstance(x, list):
        return [_snapshot(e) for e in x]
    if isinstance(x, tuple):
        return tuple(_snapshot(e) for e in x)
    if isinstance(x, bytearray):
        return bytearray(x)
    return x


def _recording_op(op: str, calls: list[Call]):
    fn = getattr(ref, op)
    names = SIGNATURES[op]

    def recorded(*args, **kwargs):
        bound = dict(zip(names, args))
        bound.update(kwargs)
        entry = Call(op, {k: _snapshot(v) for k, v in bound.items()})
        calls.append(entry)
        try:
            entry.result = fn(*args, **kwargs)
            return entry.result
        except Exception as err:
            entry.error = err
            raise
        finally:
            state = bound.get("state")
            if isinstance(state, SegmentState) and state.r.size <= LARGEST_VECTOR:
                entry.state_after = (state.r.copy(), state.v.copy())

    recorded.__name__ = op
    return recorded


def record(case) -> Recording:
    """Run ``case`` (a :class:`vgc_ref.conformance.table.Case`) with the reference as the
    implementation and return the calls it made."""
    rec = Recording(case.id)
    impl = Impl(name="vgc_ref (recorded)", **{op: _recording_op(op, rec.calls) for op in OPERATIONS})
    case.run(impl)
    return rec


# --------------------------------------------------------------------------------------
# A call as plain values: what a program in any language reads
# --------------------------------------------------------------------------------------


class NotExpressibleError(Exception):
    """A call needs a Python object to make its point; the message says which."""


def _param_doc(given: float, x32) -> dict:
    """A hyperparameter: ``value`` as the caller gave it (a float64), ``bits`` the float32
    it rounds to, which is what the arithmetic uses (docs/algorithm.md)."""
    return {"value": float(given), "bits": f"{int(np.float32(x32).view(np.uint32)):#010x}"}


def _array(name: str, x, dtype=np.float32) -> np.ndarray:
    """``x`` as a C-ordered array of its values (a strided or read-only view becomes a plain
    copy); NotExpressibleError for anything but an ndarray of ``dtype``."""
    if not isinstance(x, np.ndarray):
        raise NotExpressibleError(f"{name} is a {type(x).__name__}, not an array (argument types)")
    if x.dtype != dtype:
        raise NotExpressibleError(f"{name} has dtype {x.dtype} (argument types)")
    if x.size > LARGEST_VECTOR:
        raise NotExpressibleError(f"{name} has {x.size} elements, too many for a vector file (size)")
    return np.array(x, order="C", copy=True)  # keeps a 0-D array 0-D (ascontiguousarray would not)


def _int(name: str, x) -> int:
    if isinstance(x, bool | np.bool_) or not isinstance(x, int | np.integer):
        raise NotExpressibleError(f"{name} is a {type(x).__name__}, not an int (argument types)")
    return int(x)


def _message(name: str, x) -> bytes:
    """A message as its bytes: bytes, bytearray and a memoryview read in C order."""
    if isinstance(x, bytes | bytearray | memoryview):
        return bytes(x)
    raise NotExpressibleError(f"{name} is a {type(x).__name__}, not a byte string (argument types)")


def to_values(call: Call) -> tuple[dict, dict]:
    """(doc, files): the call's arguments as a JSON document and named arrays / byte strings.

    Raises NotExpressibleError when an argument is not a plain value. ``out`` arrays are
    dropped (the caller checks that the outcome does not depend on them).
    """
    a, op = call.args, call.op
    doc: dict = {"op": op}
    files: dict = {}
    if op in ("vgc_step", "strom_step"):
        state = a["state"]
        if not isinstance(state, SegmentState):
            raise NotExpressibleError("state is not a SegmentState (argument types)")
        doc["segment_id"] = _int("segment_id", state.segment_id)
        names = ("r", "v", "g", "s") if op == "vgc_step" else ("r", "v", "g")
        values = {"r": state.r, "v": state.v, "g": a.get("g"), "s": a.get("s")}
        for name in names:
            files[f"{name}.f32"] = _array(name, values[name])
            doc[name] = list(files[f"{name}.f32"].shape)
        params = a.get("params")
        if op == "vgc_step" and type(params) is VGCParams:
            doc["params"] = {
                "alpha": _param_doc(params.alpha, params.alpha32),
                "zeta": _param_doc(params.zeta, params.zeta32),
                "tau": _param_doc(params.tau, params.tau32),
                "residual": params.residual,
            }
        elif op == "strom_step" and type(params) is StromParams:
            doc["params"] = {"tau": _param_doc(params.tau, params.tau32)}
        else:
            raise NotExpressibleError(f"params is a {type(params).__name__} (argument types)")
    elif op == "encode_message":
        packets = a["packets"]
        if not isinstance(packets, list | tuple):
            raise NotExpressibleError(f"packets is a {type(packets).__name__}, not a list (argument types)")
        doc["packets"] = []
        for j, p in enumerate(packets):
            if type(p) is not Packet:
                raise NotExpressibleError(f"packets[{j}] is a {type(p).__name__} (argument types)")
            if p.words.ndim != 1:
                raise NotExpressibleError(f"packets[{j}].words is not 1-D (argument types)")
            doc["packets"].append(
                {
                    "segment_id": _int("segment_id", p.segment_id),
                    "n": _int("n", p.n),
                    "codec": p.codec.name,
                    "param": _int("param", p.param),
                    "count": int(p.words.size),
                }
            )
            files[f"packet{j}.words.u32"] = _array("words", p.words, np.uint32)
    elif op == "decode_message":
        files["data.bin"] = _message("data", a["data"])
    elif op == "decode_accumulate":
        messages, sizes = a["messages"], a["sizes"]
        if not isinstance(messages, list | tuple):
            raise NotExpressibleError(f"messages is a {type(messages).__name__}, not a list (argument types)")
        if not isinstance(sizes, list | tuple):
            raise NotExpressibleError(f"sizes is a {type(sizes).__name__}, not a list (argument types)")
        doc["ranks"] = len(messages)
        doc["sizes"] = [_int("sizes[j]", n) for n in sizes]
        for w, m in enumerate(messages):
            files[f"rank{w}.bin"] = _message(f"messages[{w}]", m)
    elif op in ("dense_grad_var", "conv_grad_var"):
        first = "x" if op == "dense_grad_var" else "patches"
        for name in (first, "delta"):
            files[f"{name}.f32"] = _array(name, a.get(name))
            doc[name] = list(files[f"{name}.f32"].shape)
        if op == "conv_grad_var":
            if "form" not in a:
                raise NotExpressibleError("form not given: its default is the signature's (argument types)")
            form = a["form"]
            if not isinstance(form, str):
                raise NotExpressibleError(f"form is a {type(form).__name__} (argument types)")
            doc["form"] = form
    else:
        raise NotExpressibleError(f"unknown operation {op}")
    return doc, files


def from_values(doc: dict, files: dict) -> dict:
    """The keyword arguments of the call that :func:`to_values` wrote (fresh, writeable)."""
    op = doc["op"]

    def arr(name):
        return np.array(files[f"{name}.f32"], np.float32).reshape(doc[name])

    if op in ("vgc_step", "strom_step"):
        p = doc["params"]
        if op == "vgc_step":
            values = {k: p[k]["value"] for k in ("alpha", "zeta", "tau")}
            params = VGCParams(**values, residual=p["residual"])
            extra = {"s": arr("s")}
        else:
            params = StromParams(tau=p["tau"]["value"])
            extra = {}
        state = SegmentState(doc["segment_id"], arr("r"), arr("v"))
        return {"state": state, "g": arr("g"), **extra, "params": params}
    if op == "encode_message":
        return {
            "packets": [
                Packet(
                    q["segment_id"],
                    q["n"],
                    ref.Codec[q["codec"]],
                    q["param"],
                    np.array(files[f"packet{j}.words.u32"], np.uint32),
                )
                for j, q in enumerate(doc["packets"])
            ]
        }
    if op == "decode_message":
        return {"data": bytes(files["data.bin"])}
    if op == "decode_accumulate":
        messages = [bytes(files[f"rank{w}.bin"]) for w in range(doc["ranks"])]
        return {"messages": messages, "sizes": doc["sizes"]}
    first = "x" if op == "dense_grad_var" else "patches"
    kwargs = {first: arr(first), "delta": arr("delta")}
    if op == "conv_grad_var":
        kwargs["form"] = doc["form"]
    return kwargs


def packet_doc(p) -> dict:
    """A packet's header fields as the vectors write them (``codec`` by name)."""
    return {
        "segment_id": int(p.segment_id),
        "n": int(p.n),
        "codec": ref.Codec(int(p.codec)).name,
        "param": int(p.param),
        "count": int(np.asarray(p.words).size),
    }


def outcome(op: str, result, error: BaseException | None, state=None) -> tuple[dict, dict]:
    """(result.json, files) of one call as the vectors store it.

    ``state`` is the step's state after the call (written whether it returned or raised:
    a rejected step leaves it unchanged). Raises TypeError/ValueError when a result is not
    of the protocol's types, which the caller reports as the implementation's failure.
    """
    files: dict = {}
    if state is not None:
        files["r.f32"] = np.array(state[0], np.float32)
        files["v.f32"] = np.array(state[1], np.float32)
    if error is not None:
        return error_doc(error), files
    doc: dict = {"ok": True}
    if op in ("vgc_step", "strom_step"):
        doc["packet"] = packet_doc(result)
        files["words.u32"] = np.array(result.words, np.uint32)
    elif op == "encode_message":
        files["message.bin"] = bytes(result)
    elif op == "decode_message":
        doc["packets"] = [{**packet_doc(p), "words": [int(w) for w in p.words]} for p in result]
    elif op == "decode_accumulate":
        for j, g_hat in enumerate(result):
            files[f"g_hat{j}.f32"] = np.array(g_hat, np.float32)
    else:
        for name, x in zip(("g_W", "s_W", "g_b", "s_b"), result):
            files[f"{name}.f32"] = np.array(x, np.float32)
    return doc, files


def run_values(impl, doc: dict, files: dict) -> tuple[dict, dict]:
    """Run one call given as values on ``impl``; its outcome as :func:`outcome` writes it."""
    return run_kwargs(impl, doc["op"], from_values(doc, files))


def run_kwargs(impl, op: str, kwargs: dict) -> tuple[dict, dict]:
    """Call ``impl``'s ``op`` with ``kwargs``; its outcome as :func:`outcome` writes it. A
    result that is not of the protocol's types is written as the error it causes."""
    try:
        result, error = getattr(impl, op)(**kwargs), None
    except Exception as err:  # the outcome under comparison
        result, error = None, err
    state = kwargs.get("state")
    after = (state.r, state.v) if state is not None else None
    try:
        return outcome(op, result, error, after)
    except Exception as err:  # the result is not a packet / arrays / bytes
        return outcome(op, None, TypeError(f"{op} returned {type(result).__name__}: {err}"), after)


def same_outcome(a: tuple[dict, dict], b: tuple[dict, dict]) -> bool:
    """Equal result documents and byte-identical files."""
    if a[0] != b[0] or set(a[1]) != set(b[1]):
        return False
    return all(_bytes(a[1][k]) == _bytes(b[1][k]) for k in a[1])


def _bytes(x) -> bytes:
    if isinstance(x, np.ndarray):
        return x.astype(x.dtype.newbyteorder("<")).tobytes()
    return bytes(x)


def as_values(rec: Recording) -> list[tuple[dict, dict, dict, dict]] | str:
    """Every call of a recorded case as (doc, in-files, result doc, out-files), each
    replayed on the reference from its values to prove the values alone give the recorded
    outcome; or the reason the case is Python-only."""
    if not rec.calls:
        return "the case makes no call of the implementation"
    calls = []
    for call in rec.calls:
        try:
            doc, files = to_values(call)
        except NotExpressibleError as why:
            return str(why)
        recorded = outcome(call.op, call.result, call.error, call.state_after)
        replayed = run_values(ref, doc, files)
        if not same_outcome(recorded, replayed):
            return (
                f"{call.op}: the outcome depends on an argument that is not a value "
                "(out arrays, buffer or array kinds)"
            )
        calls.append((doc, files, *recorded))
    return calls


def error_doc(err: BaseException) -> dict:
    """The error object of the vectors: ``ok`` false, ``error`` (the class name) and every
    attribute of :data:`ERROR_ATTRIBUTES` the exception carries."""
    doc = {"ok": False, "error": type(err).__name__}
    for attr in ERROR_ATTRIBUTES:
        if hasattr(err, attr):
            value = getattr(err, attr)
            doc[attr] = int(value) if isinstance(value, np.integer) else value
    return doc
