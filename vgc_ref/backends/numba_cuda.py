"""CUDA backend (``numba.cuda`` kernels) with the NumPy reference's exact results.

Each public function has the signature of its reference twin (named in its docstring).
The kernels are in :mod:`vgc_ref.backends.cuda_kernels` (importable without a GPU, so
that CI compiles them for real targets); this module launches them. Without a GPU the
same kernels run on Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, set before Numba
is first imported), which is how CI runs them.

Two ways to hold the state:

* **Host state** (:class:`~vgc_ref.state.SegmentState`, NumPy r and v): works exactly
  like every other backend. Each step copies g, s, r, v to the device and r, v back, so
  PCIe bounds it.
* **Device state** (:class:`DeviceSegmentState`): r and v stay in device memory from
  step to step. ``vgc_step`` and ``strom_step`` then take g and s as device arrays
  (anything with ``__cuda_array_interface__``: Numba device arrays, CuPy arrays,
  PyTorch CUDA tensors; host arrays are copied up) and copy back only a few flags and
  the packet's words. Each segment keeps its device buffers (flags, tile counts, a
  word scratch, the words) and reuses them every step.

Errors are the reference's (class, segment, lowest index, message), raised after the
scan and before anything was written: the kernels that write check the scan's flags
on the device and do nothing when an input was bad, so the state is unchanged.

``check_step`` followed by ``vgc_step`` or ``strom_step`` on the same
:class:`DeviceSegmentState` with the same g and s objects (what
:class:`~vgc_ref.compressor.Compressor`-style callers do: validate every segment, then
step every segment) reuses the check's scan instead of scanning again: the scan of a
device state's check uses the hyperparameters of its last step (alpha and tau decide
the largest exponent E). Writing to g, s or the state between the two calls is not
supported; a different object, other hyperparameters, or a step in between make the
step scan again.

Which CUDA target: the code uses only the ``numba.cuda`` API. Numba's built-in CUDA
target is deprecated in favour of NVIDIA's ``numba-cuda`` package, which takes over the
``numba.cuda`` name when installed; the project's ``cuda`` extra installs it
(``pip install -e '.[cuda]'``), and that is what a GPU machine should use. The default
install compiles and runs on the built-in one too. See docs/performance.md.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np
from numba import cuda

from vgc_ref.aggregate import rank_ordered_segments
from vgc_ref.backends import Backend, numba_conv
from vgc_ref.backends import cuda_kernels as kern
from vgc_ref.backends.numba_cpu import (
    _check_vectors,
    _largest_exponent,
    _raise_first_bad,
    decode_messages,
)
from vgc_ref.criterion import check_out, missing_variance
from vgc_ref.encoding import encode_message
from vgc_ref.errors import InputError, NonFiniteError
from vgc_ref.packet import MAX_SEGMENT_LEN, Codec, Packet
from vgc_ref.params import StromParams, VGCParams
from vgc_ref.state import SegmentState, check_segment_id, check_vector
from vgc_ref.variance import _check_pair

SIMULATOR = kern.SIMULATOR
TPB = kern.TPB

if not SIMULATOR and not cuda.is_available():
    raise ImportError(
        "numba-cuda backend: no usable CUDA GPU (numba.cuda.is_available() is False); "
        "set NUMBA_ENABLE_CUDASIM=1 before importing numba to run it on the CUDA simulator"
    )


# --------------------------------------------------------------------------------------
# Device arrays
# --------------------------------------------------------------------------------------


def is_device_array(x: object) -> bool:
    """Whether ``x`` lives on the device (``__cuda_array_interface__``, or a simulator array)."""
    if SIMULATOR:
        return bool(getattr(x, "__cuda_ndarray__", False))
    return cuda.is_cuda_array(x)


def _as_device(x):
    """A Numba device array for x (a view over another library's memory, no copy)."""
    return x if getattr(x, "__cuda_ndarray__", False) else cuda.as_cuda_array(x)


def _c_contiguous(d) -> bool:
    if SIMULATOR:
        return bool(d.flags["C_CONTIGUOUS"])
    return d.is_c_contiguous()


def _check_device_vector(name: str, x, n: int | None = None):
    """The device twin of :func:`vgc_ref.state.check_vector` (same messages), plus contiguity."""
    d = _as_device(x)
    if np.dtype(d.dtype) != np.float32:
        raise InputError(name, f"dtype {np.dtype(d.dtype)}", "must have dtype float32")
    if d.ndim != 1:
        raise InputError(name, f"shape {tuple(d.shape)}", "must be 1-D")
    if n is not None and d.shape[0] != n:
        raise InputError(name, f"length {d.shape[0]}", f"must have length n = {n}")
    if d.shape[0] > MAX_SEGMENT_LEN:
        raise InputError(name, f"length {d.shape[0]}", f"a segment holds at most 2^27 = {MAX_SEGMENT_LEN}")
    if not _c_contiguous(d):
        raise InputError(name, "a strided device array", "device arrays must be C-contiguous")
    return d


class DeviceSegmentState:
    """State of one segment with r and v in device memory (float32[n] each).

    The device twin of :class:`~vgc_ref.state.SegmentState`: the step functions of this
    backend update it in place on the device. Make one with :meth:`from_host` or
    :meth:`zeros`, which go through SegmentState's checks (finite r and v, v >= 0);
    the constructor checks only dtype, shape and contiguity of the device arrays it is
    given, not their values. :meth:`to_host` copies it back.
    """

    def __init__(self, segment_id: int, r, v) -> None:
        self.segment_id = check_segment_id(segment_id)
        self.r = _check_device_vector("r", r)
        self.v = _check_device_vector("v", v, self.r.shape[0])
        self._workspace = _Workspace(self.n)
        self._version = 0  # + 1 per step: a check's scan is reused only before the next
        self._last = None  # (alpha32, tau32) of the last VGC step: what a check scans for
        self._checked = None  # (g, s, version, alpha32, tau32) of the last check

    @classmethod
    def from_host(cls, state: SegmentState) -> DeviceSegmentState:
        """A device copy of a (validated) host state."""
        if not isinstance(state, SegmentState):
            raise InputError("state", type(state).__name__, "must be a SegmentState")
        return cls(
            state.segment_id,
            cuda.to_device(np.ascontiguousarray(state.r)),
            cuda.to_device(np.ascontiguousarray(state.v)),
        )

    @classmethod
    def zeros(cls, n: int, segment_id: int = 0) -> DeviceSegmentState:
        """Fresh state on the device: r = v = +0.0 everywhere."""
        return cls.from_host(SegmentState.zeros(n, segment_id))

    @property
    def n(self) -> int:
        """Length of the segment."""
        return int(self.r.shape[0])

    def to_host(self) -> SegmentState:
        """A host copy (validated like any SegmentState)."""
        return SegmentState(self.segment_id, self.r.copy_to_host(), self.v.copy_to_host())

    def copy(self) -> DeviceSegmentState:
        """An independent device copy, copied device to device (the values were
        validated when this state was made, and the backend keeps them valid)."""
        r = cuda.device_array_like(self.r)
        v = cuda.device_array_like(self.v)
        r.copy_to_device(self.r)
        v.copy_to_device(self.v)
        return DeviceSegmentState(self.segment_id, r, v)

    def __repr__(self) -> str:
        return f"DeviceSegmentState(segment_id={self.segment_id}, n={self.n})"


class _Workspace:
    """A segment's device buffers, allocated once and reused by every step.

    flags: int64[N_FLAGS] (cuda_kernels.G_NONFINITE ...); counts: per tile, then the
    tiles' word offsets; scratch: tile t's words at t * TPB; words: the packet's words;
    and, for host inputs, one float32[n] buffer per uploaded array.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.n_tiles = max(1, math.ceil(n / TPB))
        self.flags = cuda.device_array(kern.N_FLAGS, np.int64)
        self.counts = cuda.device_array(self.n_tiles, np.int64)
        self.scratch = cuda.device_array(max(n, 1), np.uint32)
        self.words = cuda.device_array(max(n, 1), np.uint32)
        self._staging: dict[str, object] = {}

    def upload(self, name: str, x: np.ndarray):
        """x copied into this workspace's buffer ``name`` (allocated on first use)."""
        buf = self._staging.get(name)
        if buf is None:
            buf = self._staging[name] = cuda.device_array(self.n, np.float32)
        if self.n:
            buf.copy_to_device(np.ascontiguousarray(x))
        return buf


_LOCAL = threading.local()


def _host_workspace(n: int) -> _Workspace:
    """The workspace for host states of length n (per thread; the last few sizes kept)."""
    cache = getattr(_LOCAL, "workspaces", None)
    if cache is None:
        cache = _LOCAL.workspaces = {}
    ws = cache.pop(n, None) or _Workspace(n)
    cache[n] = ws  # most recently used last
    while len(cache) > 8:
        cache.pop(next(iter(cache)))
    return ws


def _blocks(n_items: int) -> int:
    return max(1, min(kern.MAX_BLOCKS, math.ceil(n_items / TPB)))


# --------------------------------------------------------------------------------------
# A step
# --------------------------------------------------------------------------------------


class _Step:
    """One step's device operands: where r, v, g, s are and what to copy back."""

    def __init__(self, state, g, s) -> None:
        self.state = state
        self.device_state = isinstance(state, DeviceSegmentState)
        if not self.device_state and not isinstance(state, SegmentState):
            raise InputError("state", type(state).__name__, "must be a SegmentState or DeviceSegmentState")
        n = state.n
        g_dev = is_device_array(g)
        s_dev = s is not None and is_device_array(s)
        if self.device_state:
            self.ws = state._workspace
        else:
            self.ws = _host_workspace(n)
        if not g_dev and not s_dev:
            _check_vectors(state, g, s)  # the reference's checks, in its order
        else:
            self._check_mixed(g, s, g_dev, s_dev)
        self.g = _check_device_vector("g", g, n) if g_dev else self.ws.upload("g", g)
        if s is None:
            self.s = self.g
        else:
            self.s = _check_device_vector("s", s, n) if s_dev else self.ws.upload("s", s)
        # Where the error message's values are read from (one element each).
        self.host_g = self.g if g_dev else g
        self.host_s = self.s if s_dev else s
        if self.device_state:
            self.r, self.v = state.r, state.v
        else:
            self.r = self.ws.upload("r", state.r)
            self.v = self.ws.upload("v", state.v) if s is not None else self.r

    def _check_mixed(self, g, s, g_dev, s_dev) -> None:
        """_check_vectors for device arrays: a malformed s loses to a non-finite g."""
        n = self.state.n
        if g_dev:
            _check_device_vector("g", g, n)
        else:
            _check_vectors(self.state, g, None)
        if s is None:
            return
        try:
            if s_dev:
                _check_device_vector("s", s, n)
            else:
                check_vector("s", s, n)
        except InputError:
            # The reference checks g's values before s's type: a non-finite g wins.
            d_g = _check_device_vector("g", g, n) if g_dev else self.ws.upload("g", g)
            flags = self.ws.flags
            kern.reset_kernel[1, 1](flags)
            if n:
                kern.scan_kernel[_blocks(n), TPB](
                    d_g, d_g, d_g, d_g, np.float32(1), np.float32(0), False, flags
                )
            first = int(flags.copy_to_host()[kern.G_NONFINITE])
            if first != kern.BIG:
                raise NonFiniteError("g", self.state.segment_id, first, float(d_g[first])) from None
            raise

    def scan(self, alpha, tau, has_s: bool) -> None:
        """Reset the flags and run the scan (no copy back)."""
        kern.reset_kernel[1, 1](self.ws.flags)
        if self.state.n:
            kern.scan_kernel[_blocks(self.state.n), TPB](
                self.g, self.s, self.r, self.v, alpha, tau, has_s, self.ws.flags
            )

    def finish(self, has_s: bool) -> tuple[np.ndarray, int]:
        """Copy the flags back and raise the scan's error, if any; else (words, max bits).

        The state is copied back to a host state only when there was no error.
        """
        ws = self.ws
        flags = ws.flags.copy_to_host()
        self.raise_error(flags, has_s)
        total = int(flags[kern.TOTAL])
        words = ws.words[:total].copy_to_host() if total else np.empty(0, np.uint32)
        if not self.device_state:
            _copy_back(self.r, self.state.r)
            if has_s:
                _copy_back(self.v, self.state.v)
        else:
            self.state._version += 1
        return words, int(flags[kern.MAX_BITS])

    def raise_error(self, flags: np.ndarray, has_s: bool) -> None:
        bad = flags[: kern.N_CHECKS].copy()
        bad[bad == kern.BIG] = -1
        if not has_s:
            bad[[kern.S_NONFINITE, kern.S_NEGATIVE, kern.VS_OVERFLOW]] = -1
        _raise_first_bad(bad.reshape(1, kern.N_CHECKS), self.state, self.host_g, self.host_s)

    def write_and_gather(self, write) -> None:
        """Launch a write kernel (given its launch configuration), then offsets and gather."""
        ws = self.ws
        blocks = min(kern.MAX_BLOCKS, ws.n_tiles)
        write(blocks)
        kern.offsets_kernel[1, TPB](ws.counts, ws.flags)
        kern.gather_kernel[blocks, TPB](ws.scratch, ws.counts, ws.flags, ws.words)


def _copy_back(d, host: np.ndarray) -> None:
    if host.size == 0:
        return
    if host.flags.c_contiguous:
        d.copy_to_host(host)
    else:
        host[...] = d.copy_to_host()


def _scan_reused(step: _Step, g, s, alpha, tau) -> bool:
    """Whether this step can take its scan from the check_step just before it."""
    st = step.state
    if not step.device_state or st._checked is None:
        return False
    cg, cs, version, calpha, ctau = st._checked
    st._checked = None
    return cg is g and cs is s and version == st._version and calpha == alpha and ctau == tau


def check_step(state, g, s=None) -> None:
    """Validate one step's inputs on the device; twin of :func:`vgc_ref.criterion.accumulate`.

    Raises what the reference raises and changes nothing. For a
    :class:`DeviceSegmentState` the scan is kept for the step that follows (module
    docstring).
    """
    step = _Step(state, g, s)
    has_s = s is not None
    last = state._last if step.device_state else None
    alpha, tau = last if (has_s and last is not None) else (np.float32(1), np.float32(0))
    step.scan(alpha, tau, has_s)
    step.raise_error(step.ws.flags.copy_to_host(), has_s)
    if step.device_state and (last is not None or not has_s):
        state._checked = (g, s, state._version, alpha, tau)


def vgc_step(state, g, s, params: VGCParams) -> Packet:
    """One VGC step on one segment; twin of :func:`vgc_ref.criterion.vgc_step`.

    ``state`` is a SegmentState (host) or a :class:`DeviceSegmentState`; g and s are
    float32[n] host or device arrays.
    """
    if not isinstance(params, VGCParams):
        raise TypeError(f"params must be VGCParams, not {type(params).__name__}")
    if s is None:
        check_step(state, g, None)  # g's errors first
        raise missing_variance()
    step = _Step(state, g, s)
    alpha, tau = params.alpha32, params.tau32
    if not _scan_reused(step, g, s, alpha, tau):
        step.scan(alpha, tau, True)
    ws = step.ws
    feedback = params.residual == "feedback"

    def write(blocks):
        kern.vgc_write_kernel[blocks, TPB](
            step.g,
            step.s,
            step.r,
            step.v,
            alpha,
            params.zeta32,
            tau,
            feedback,
            ws.flags,
            ws.counts,
            ws.scratch,
        )

    step.write_and_gather(write)
    words, max_bits = step.finish(True)
    if step.device_state:
        state._last = (alpha, tau)
    return Packet(state.segment_id, state.n, Codec.VGC_Q4, _largest_exponent(max_bits), words)


def strom_step(state, g, params: StromParams) -> Packet:
    """One step of Strom's baseline; twin of :func:`vgc_ref.criterion.strom_step`."""
    if not isinstance(params, StromParams):
        raise TypeError(f"params must be StromParams, not {type(params).__name__}")
    step = _Step(state, g, None)
    tau = params.tau32
    if not _scan_reused(step, g, None, np.float32(1), np.float32(0)):
        step.scan(np.float32(1), np.float32(0), False)
    ws = step.ws

    def write(blocks):
        kern.strom_write_kernel[blocks, TPB](step.g, step.r, tau, ws.flags, ws.counts, ws.scratch)

    step.write_and_gather(write)
    words, _ = step.finish(False)
    tau_bits = int(tau.view(np.uint32))
    return Packet(state.segment_id, state.n, Codec.STROM, tau_bits, words)


# --------------------------------------------------------------------------------------
# Decode and accumulate
# --------------------------------------------------------------------------------------


def _check_device_out(out, sizes) -> list:
    if len(out) != len(sizes):
        raise InputError("out", f"{len(out)} arrays", f"must hold one array per segment ({len(sizes)})")
    return [_check_device_vector(f"out[{j}]", buf, int(n)) for j, (buf, n) in enumerate(zip(out, sizes))]


def decode_accumulate(messages: Sequence[bytes], sizes: Sequence[int], out=None) -> list:
    """Decode P messages and return g_hat; twin of :func:`vgc_ref.aggregate.decode_accumulate`.

    Decoding and validation are the numba-cpu backend's (the reference's errors), on the
    host. Per segment the ranks' words go to the device in one copy (into a buffer kept
    from call to call), and one kernel adds them in rank order, divides by P and writes
    g_hat once. ``out`` may be host arrays
    (g_hat is copied into them) or device arrays (g_hat is written there; nothing is
    copied back, and those arrays are returned).
    """
    packet_lists = decode_messages(messages)
    p32 = np.float32(len(packet_lists))
    device_out = out is not None and len(out) > 0 and all(is_device_array(o) for o in out)
    if device_out:
        sizes, segments = rank_ordered_segments(packet_lists, sizes, None)
        d_out = _check_device_out(out, sizes)
    else:
        sizes, segments = rank_ordered_segments(packet_lists, sizes, out)
    result = []
    for j, (n, packets) in enumerate(zip(sizes, segments)):
        target = d_out[j] if device_out else _decode_buffer("out", n, np.float32)
        if n:
            ranks = np.zeros((len(packets), 4), np.int64)  # start, stop, codec, param
            ranks[:, 1] = np.cumsum([p.count for p in packets])
            ranks[1:, 0] = ranks[:-1, 1]
            ranks[:, 2] = [int(p.codec) for p in packets]
            ranks[:, 3] = [int(p.param) for p in packets]
            total = int(ranks[-1, 1])
            words = _decode_buffer("words", max(total, 1), np.uint32)
            if total:
                words[:total].copy_to_device(np.concatenate([p.words for p in packets]))
            kern.decode_kernel[_blocks(n), TPB](target, words, cuda.to_device(ranks), p32)
        if device_out:
            result.append(out[j])
        elif out is None:
            result.append(target.copy_to_host())
        else:
            _copy_back(target, out[j])
            result.append(out[j])
    return result


def _decode_buffer(name: str, size: int, dtype):
    """A device buffer of at least ``size`` elements, kept per thread and reused; its first ``size``."""
    buffers = getattr(_LOCAL, "decode", None)
    if buffers is None:
        buffers = _LOCAL.decode = {}
    buf = buffers.get(name)
    if buf is None or buf.shape[0] < size:
        buf = buffers[name] = cuda.device_array(1 << max(size - 1, 1).bit_length(), dtype)
    return buf[:size]


# --------------------------------------------------------------------------------------
# The dense layer
# --------------------------------------------------------------------------------------


def dense_grad_var(x: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """g_W, s_W, g_b, s_b of a dense layer; twin of :func:`vgc_ref.variance.dense_grad_var`.

    The sums run over the batch in order, b = 0 .. B-1, one rounded float32 multiply and
    one rounded add at a time from +0.0 (cuda_kernels.dense_grad_var_kernel), so they
    are bit-identical to the fixed-order sums of docs/algorithm.md; BLAS's order is its
    own.
    """
    _check_pair(x, delta)
    n_in = x.shape[1]
    n_out = delta.shape[1]
    d_x = cuda.to_device(np.ascontiguousarray(x))
    d_d = cuda.to_device(np.ascontiguousarray(delta))
    d_gw = cuda.device_array((n_in, n_out), np.float32)
    d_sw = cuda.device_array((n_in, n_out), np.float32)
    d_gb = cuda.device_array(n_out, np.float32)
    d_sb = cuda.device_array(n_out, np.float32)
    if n_in and n_out:
        n_tiles = math.ceil(n_in / kern.TILE) * math.ceil(n_out / kern.TILE)
        blocks = min(n_tiles, kern.MAX_BLOCKS)  # a grid-stride loop over the tiles
        kern.dense_grad_var_kernel[blocks, (kern.TILE, kern.TILE)](d_x, d_d, d_gw, d_sw)
    if n_out:
        kern.bias_grad_var_kernel[_blocks(n_out), TPB](d_d, d_gb, d_sb)
    return d_gw.copy_to_host(), d_sw.copy_to_host(), d_gb.copy_to_host(), d_sb.copy_to_host()


def vgc_step_scratch(state, g, s, params: VGCParams, out=None) -> Packet:
    """Twin of :func:`vgc_ref.criterion.vgc_step_scratch`: this backend's step is
    transactional (more than asked); with ``out`` (a state of the same kind and length
    as ``state``), ``state`` is stepped on a copy that is then copied into ``out``."""
    if not isinstance(params, VGCParams):
        raise TypeError(f"params must be VGCParams, not {type(params).__name__}")
    if out is None or out is state:
        return vgc_step(state, g, s, params)
    if isinstance(state, SegmentState):
        check_out(state, out, g, s)
    elif not isinstance(out, DeviceSegmentState) or out.n != state.n:
        raise InputError(
            "out", repr(out), f"must be a DeviceSegmentState of length {state.n}, like the state"
        )
    stepped = state.copy()
    packet = vgc_step(stepped, g, s, params)
    if isinstance(out, SegmentState):
        out.r[...] = stepped.r
        out.v[...] = stepped.v
    else:
        out.r.copy_to_device(stepped.r)
        out.v.copy_to_device(stepped.v)
    return packet


BACKEND = Backend(
    name="numba-cuda",
    vgc_step=vgc_step,
    vgc_step_scratch=vgc_step_scratch,
    strom_step=strom_step,
    check_step=check_step,
    encode_message=encode_message,  # the packets' words are host arrays
    decode_accumulate=decode_accumulate,
    dense_grad_var=dense_grad_var,
    conv_grad_var=numba_conv.conv_grad_var,
)
