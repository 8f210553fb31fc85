"""Per-segment state and the segment layout (docs/algorithm.md section 1).

A *segment* is a contiguous float32 vector of at most 2^27 elements; one layer's weight
is one segment. Each segment carries its own state:

* ``r`` -- the residual: gradient accumulated and not yet sent. Sending element i
  subtracts the sent value from r_i ("feedback") or zeroes it ("reset").
* ``v`` -- the accumulated variance estimate of r. It grows by s each step, is zeroed
  when the element is sent, and decays by zeta each step it is held back, so old noise
  counts less and a consistently signed gradient is eventually sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vgc_ref.errors import InputError
from vgc_ref.packet import MAX_SEGMENT_LEN

MAX_SEGMENT_ID = (1 << 32) - 1


def check_segment_id(segment_id: int) -> int:
    """Return ``segment_id`` as int after checking it fits the u32 wire field."""
    if isinstance(segment_id, (bool, np.bool_)) or not isinstance(segment_id, (int, np.integer)):
        raise InputError("segment_id", repr(segment_id), "must be an integer")
    if not 0 <= segment_id <= MAX_SEGMENT_ID:
        raise InputError("segment_id", segment_id, f"must be in 0 .. {MAX_SEGMENT_ID}")
    return int(segment_id)


def check_vector(name: str, x: object, n: int | None = None) -> np.ndarray:
    """Check that ``x`` is a 1-D float32 ndarray (of length n when given); return it.

    Nothing is converted: a float64 gradient is an error, not a silent copy.
    """
    if not isinstance(x, np.ndarray):
        raise InputError(name, type(x).__name__, "must be a numpy.ndarray")
    if x.dtype != np.float32:
        raise InputError(name, f"dtype {x.dtype}", "must have dtype float32")
    if x.ndim != 1:
        raise InputError(name, f"shape {x.shape}", "must be 1-D")
    if n is not None and x.shape[0] != n:
        raise InputError(name, f"length {x.shape[0]}", f"must have length n = {n}")
    if x.shape[0] > MAX_SEGMENT_LEN:
        raise InputError(name, f"length {x.shape[0]}", f"a segment holds at most 2^27 = {MAX_SEGMENT_LEN}")
    return x


@dataclass(eq=False)
class SegmentState:
    """State of one segment on one worker: r and v, float32[n], updated in place.

    Parameters
    ----------
    segment_id : int
        The segment's id (0 .. 2^32 - 1); it goes into the packet and error messages.
    r : numpy.ndarray
        float32[n] residual (not-yet-sent accumulated gradient).
    v : numpy.ndarray
        float32[n] accumulated variance estimate of r.
    """

    segment_id: int
    r: np.ndarray  # float32[n]
    v: np.ndarray  # float32[n]

    def __post_init__(self) -> None:
        self.segment_id = check_segment_id(self.segment_id)
        check_vector("r", self.r)
        check_vector("v", self.v, self.r.shape[0])
        for name, x in (("r", self.r), ("v", self.v)):
            if not x.flags.writeable:
                raise InputError(name, "a read-only array", "state must be writeable")
            if not np.isfinite(x).all():
                i = int(np.argmax(~np.isfinite(x)))
                raise InputError(name, f"{name}[{i}] = {x[i]!r}", "state must be finite")
        if (self.v < 0).any():
            i = int(np.argmax(self.v < 0))
            raise InputError("v", f"v[{i}] = {self.v[i]!r}", "the variance estimate must be >= 0")

    @classmethod
    def zeros(cls, n: int, segment_id: int = 0) -> SegmentState:
        """Fresh state: r = v = +0.0 everywhere."""
        if (
            isinstance(n, (bool, np.bool_))
            or not isinstance(n, (int, np.integer))
            or not 0 <= n <= MAX_SEGMENT_LEN
        ):
            raise InputError("n", repr(n), f"must be an integer in 0 .. 2^27 = {MAX_SEGMENT_LEN}")
        return cls(segment_id, np.zeros(n, np.float32), np.zeros(n, np.float32))

    @property
    def n(self) -> int:
        """Length of the segment."""
        return int(self.r.shape[0])

    def copy(self) -> SegmentState:
        """An independent copy (for snapshots and tests)."""
        return SegmentState(self.segment_id, self.r.copy(), self.v.copy())


def segment_bounds(total: int, max_len: int = MAX_SEGMENT_LEN) -> list[tuple[int, int]]:
    """Split ``range(total)`` into consecutive (start, stop) pieces of at most ``max_len``.

    ``total == 0`` gives one empty segment [(0, 0)], so every buffer has a segment.
    """
    if not isinstance(total, (int, np.integer)) or total < 0:
        raise InputError("total", repr(total), "must be a non-negative integer")
    if not isinstance(max_len, (int, np.integer)) or not 1 <= max_len <= MAX_SEGMENT_LEN:
        raise InputError("max_len", repr(max_len), f"must be an integer in 1 .. 2^27 = {MAX_SEGMENT_LEN}")
    if total == 0:
        return [(0, 0)]
    return [(start, min(start + max_len, total)) for start in range(0, total, max_len)]


def split_segments(flat: np.ndarray, max_len: int = MAX_SEGMENT_LEN) -> list[np.ndarray]:
    """Views of a flat float32 buffer as segments of at most ``max_len`` (default 2^27) elements.

    The views share memory with ``flat``: writing a segment writes the buffer.
    """
    if not isinstance(flat, np.ndarray) or flat.dtype != np.float32 or flat.ndim != 1:
        raise InputError("flat", getattr(flat, "dtype", type(flat).__name__), "must be a 1-D float32 ndarray")
    return [flat[start:stop] for start, stop in segment_bounds(flat.shape[0], max_len)]
