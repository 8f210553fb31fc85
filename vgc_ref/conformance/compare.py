"""Strict comparisons of the implementation under test with the reference.

Every helper raises AssertionError with a message that shows the first difference: the
field, the element index and both bit patterns. Floats are compared as bit patterns, so
-0.0 differs from +0.0 and every NaN payload counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import vgc_ref as ref
from vgc_ref.conformance.adapter import MissingOperationError
from vgc_ref.packet import Codec, Packet
from vgc_ref.state import SegmentState

#: Error attributes that must agree with the reference's when the reference sets them.
ERROR_ATTRIBUTES = ("name", "segment", "index", "field", "offset", "rank")


def bits(x: np.ndarray) -> np.ndarray:
    """uint32 bit patterns of a float32 array."""
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


def f32_text(x: object) -> str:
    """A float32 with its bit pattern, e.g. ``0.1 (0x3dcccccd)``."""
    x32 = np.float32(x)
    return f"{float(x32)!r} ({int(x32.view(np.uint32)):#010x})"


def array_text(x: object, limit: int = 8) -> str:
    """A short rendering of an input: float32 elements with their bits, the rest as repr."""
    if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 1:
        items = [f32_text(e) for e in x[:limit]]
        more = f", ... ({x.size} elements)" if x.size > limit else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(x, np.ndarray):
        return f"ndarray(dtype={x.dtype}, shape={x.shape})"
    return repr(x)[:200]


def params_text(params: object) -> str:
    """Hyperparameters with the float32 values the arithmetic uses."""
    parts = []
    for name in ("alpha", "zeta", "tau"):
        if hasattr(params, f"{name}32"):
            value32 = f32_text(getattr(params, f"{name}32"))
            parts.append(f"{name}={getattr(params, name)!r} (float32 {value32})")
    if hasattr(params, "residual"):
        parts.append(f"residual={params.residual!r}")
    return ", ".join(parts)


def assert_bits_equal(what: str, got: object, want: np.ndarray) -> None:
    """``got`` is a float32 array of ``want``'s shape holding the same bit patterns."""
    if not isinstance(got, np.ndarray):
        raise AssertionError(f"{what}: expected a numpy.ndarray, got {type(got).__name__}")
    if got.dtype != want.dtype:
        raise AssertionError(f"{what}: dtype {got.dtype}, expected {want.dtype}")
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}")
    g = np.ascontiguousarray(got).reshape(-1).view(np.uint32)
    w = np.ascontiguousarray(want).reshape(-1).view(np.uint32)
    diff = np.flatnonzero(g != w)
    if diff.size:
        i = int(diff[0])
        gv, wv = got.reshape(-1)[i], want.reshape(-1)[i]
        raise AssertionError(
            f"{what}: {diff.size} of {w.size} elements differ; first at flat index {i}: "
            f"got {float(gv)!r} (bits {int(g[i]):#010x}), expected {float(wv)!r} (bits {int(w[i]):#010x})"
        )


def _word_text(codec: Codec, word: int) -> str:
    if codec == Codec.VGC_Q4:
        return f"{word:#010x} (index {word >> 5}, sign {(word >> 4) & 1}, k {word & 15})"
    if codec == Codec.STROM:
        return f"{word:#010x} (index {word >> 1}, sign {word & 1})"
    return f"{word:#010x}"


def assert_packet_equal(what: str, got: object, want: Packet) -> None:
    """``got`` is a Packet (or has its fields) equal to ``want`` in every field and word."""
    for attr in ("segment_id", "n", "codec", "param", "words"):
        if not hasattr(got, attr):
            raise AssertionError(f"{what}: the result has no attribute {attr!r} (expected a vgc_ref.Packet)")
    words = got.words
    if not isinstance(words, np.ndarray) or words.dtype != np.uint32 or words.ndim != 1:
        raise AssertionError(
            f"{what}: words must be a 1-D uint32 numpy array, got {type(words).__name__} "
            f"{getattr(words, 'dtype', '')} {getattr(words, 'shape', '')}"
        )
    for attr in ("segment_id", "n", "codec", "param"):
        g, w = getattr(got, attr), getattr(want, attr)
        if int(g) != int(w):
            shown = f"{int(g)} ({int(g):#x})" if attr == "param" else repr(g)
            raise AssertionError(f"{what}: {attr} = {shown}, expected {int(w)} ({int(w):#x})")
    if words.size != want.words.size:
        raise AssertionError(f"{what}: {words.size} words, expected {want.words.size}")
    diff = np.flatnonzero(words != want.words)
    if diff.size:
        i = int(diff[0])
        raise AssertionError(
            f"{what}: word {i} is {_word_text(want.codec, int(words[i]))}, expected "
            f"{_word_text(want.codec, int(want.words[i]))}"
        )


def assert_packets_equal(what: str, got: object, want: Sequence[Packet]) -> None:
    if not isinstance(got, (list, tuple)):
        raise AssertionError(f"{what}: expected a list of packets, got {type(got).__name__}")
    if len(got) != len(want):
        raise AssertionError(f"{what}: {len(got)} packets, expected {len(want)}")
    for j, (g, w) in enumerate(zip(got, want)):
        assert_packet_equal(f"{what}[{j}]", g, w)


def compare_grad_var(what: str, impl_op, ref_op, inputs: dict[str, np.ndarray], *args) -> None:
    """A layer operation (dense_grad_var, conv_grad_var) against the reference: the four
    results (g_W, s_W, g_b, s_b) bit for bit, and every input unmodified. ``inputs`` are
    passed in order (copies to the implementation), then ``args``."""
    want = ref_op(*inputs.values(), *args)
    given = {name: a.copy() for name, a in inputs.items()}
    got = impl_op(*given.values(), *args)
    assert isinstance(got, (tuple, list)) and len(got) == 4, f"{what}: must return (g_W, s_W, g_b, s_b)"
    for name, g, w in zip(("g_W", "s_W", "g_b", "s_b"), got, want):
        assert_bits_equal(f"{what}: {name}", g, w)
    for name, a in inputs.items():
        assert_bits_equal(f"{what}: {name} (input, must not be modified)", given[name], a)


def assert_state_equal(what: str, got: SegmentState, want: SegmentState) -> None:
    assert_bits_equal(f"{what}.r", got.r, want.r)
    assert_bits_equal(f"{what}.v", got.v, want.v)


def assert_bytes_equal(what: str, got: object, want: bytes) -> None:
    if not isinstance(got, (bytes, bytearray)):
        raise AssertionError(f"{what}: expected bytes, got {type(got).__name__}")
    got = bytes(got)
    if got == want:
        return
    i = next((j for j, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    raise AssertionError(
        f"{what}: {len(got)} bytes, expected {len(want)}; first difference at byte offset {i}: "
        f"got {got[i : i + 8].hex(' ')}, expected {want[i : i + 8].hex(' ')}"
    )


def call(fn: Callable, *args, **kwargs) -> tuple[object, BaseException | None]:
    """(result, None) or (None, exception); a missing operation is re-raised, never caught."""
    try:
        return fn(*args, **kwargs), None
    except MissingOperationError:
        raise
    except Exception as exc:  # the exception is the result under comparison
        return None, exc


def assert_same_outcome(what: str, got_error: BaseException | None, want_error: BaseException | None) -> None:
    """Both returned, or both raised: the same class (or a subclass) with the same attributes."""
    if want_error is None and got_error is None:
        return
    if want_error is None:
        raise AssertionError(
            f"{what}: raised {type(got_error).__name__}: {got_error}; the reference accepts this input"
        )
    if got_error is None:
        raise AssertionError(
            f"{what}: returned normally; the reference raises {type(want_error).__name__}: {want_error}"
        )
    if not isinstance(got_error, type(want_error)):
        raise AssertionError(
            f"{what}: raised {type(got_error).__module__}.{type(got_error).__name__}: {got_error}; "
            f"expected {type(want_error).__module__}.{type(want_error).__name__} (or a subclass): "
            f"{want_error}"
        )
    for attr in ERROR_ATTRIBUTES:
        if not hasattr(want_error, attr):
            continue
        want = getattr(want_error, attr)
        got = getattr(got_error, attr, "<missing>")
        if got != want:
            raise AssertionError(
                f"{what}: {type(want_error).__name__}.{attr} = {got!r}, expected {want!r} "
                f"(reference: {want_error})"
            )


def _copy(x):
    """A copy with x's layout and writeability: a strided 1-D view stays a strided view (of
    a fresh buffer) and a read-only array stays read-only, so an implementation sees the
    kind of array the caller passed."""
    if not isinstance(x, np.ndarray):
        return x
    step = x.strides[0] // x.itemsize if x.ndim == 1 and x.itemsize else 1
    if x.ndim == 1 and not x.flags.c_contiguous and step > 1 and x.strides[0] % x.itemsize == 0:
        y = np.zeros(len(x) * step, x.dtype)[::step]
        y[...] = x
    else:
        y = x.copy()
    if not x.flags.writeable:
        y.setflags(write=False)
    return y


def _sent(packet) -> set[int] | None:
    try:
        words = np.asarray(packet.words, np.uint32)
        shift = 5 if int(packet.codec) == int(Codec.VGC_Q4) else 1
        return set((words >> np.uint32(shift)).tolist())
    except Exception:  # not a packet: the comparison above said so already
        return None


def _first_sent_difference(got, want, r, v, g, s) -> str:
    """The first element one side sends and the other holds, with its inputs in float32 bits."""
    if got is None or want is None:
        return ""
    a, b = _sent(got), _sent(want)
    if a is None or b is None or a == b:
        return ""
    i = min(a ^ b)
    who = "sends" if i in a else "holds"
    parts = [
        f"{name}[{i}]={f32_text(x[i])}"
        for name, x in (("r", r), ("v", v), ("g", g), ("s", s))
        if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 1 and i < x.size
    ]
    return (
        f"first differing element: index {i}, which the implementation {who} and the reference does not; "
        + ", ".join(parts)
    )


def compare_step(impl, kind, r, v, g, s, params, segment_id=0):
    """Run the reference and the implementation on copies; compare packet, state, error and inputs.

    ``kind`` is "vgc" or "strom" (then ``s`` is ignored; ``v`` must come back untouched).
    Returns the reference's packet (None when it raised). A failure names the inputs, as
    float32 values with their bit patterns.
    """
    want_state = ref.SegmentState(segment_id, r.copy(), v.copy())
    got_state = ref.SegmentState(segment_id, r.copy(), v.copy())
    caller_r, caller_v = got_state.r, got_state.v  # the arrays the caller handed over
    g_in, s_in = _copy(g), _copy(s)
    try:
        if kind == "vgc":
            want, want_err = call(ref.vgc_step, want_state, _copy(g), _copy(s), params)
            got, got_err = call(impl.vgc_step, got_state, g_in, s_in, params)
        else:
            want, want_err = call(ref.strom_step, want_state, _copy(g), params)
            got, got_err = call(impl.strom_step, got_state, g_in, params)
        assert_same_outcome(f"{kind}_step", got_err, want_err)
        if want_err is None:
            assert_packet_equal(f"{kind}_step packet", got, want)
        what = "state after the step"
        if want_err is not None:
            what = "state after a rejected step (must be unchanged)"
        assert_state_equal(what, got_state, want_state)
        # docs/conformance.md: r and v are updated in place, so the caller reads the result
        # through its own arrays (an implementation that rebinds state.r fails here).
        assert_bits_equal(f"{what}: the caller's own r array", caller_r, want_state.r)
        assert_bits_equal(f"{what}: the caller's own v array", caller_v, want_state.v)
        for name, before, after in (("g", g, g_in), ("s", s, s_in)):
            if isinstance(before, np.ndarray) and before.dtype == np.float32:
                assert_bits_equal(f"input {name} (must not be modified)", after, before)
    except MissingOperationError:
        raise  # "X is not defined in MODULE", as it is
    except AssertionError as err:
        detail = _first_sent_difference(got if want_err is None else None, want, r, v, g, s)
        if detail:
            err = AssertionError(f"{err}\n  {detail}")
        inputs = [f"r={array_text(r)}", f"v={array_text(v)}", f"g={array_text(g)}"]
        if kind == "vgc":
            inputs.append(f"s={array_text(s)}")
        inputs.append(params_text(params))
        raise AssertionError(f"{err}\n  inputs: segment_id={segment_id}, " + ", ".join(inputs)) from None
    return want
