"""Exception classes of vgc_ref.

Every error raised for bad input is a subclass of :class:`VGCError` (and of
``ValueError``, so generic handlers still work). Each class carries the facts a
user needs to find the problem -- the field, the index or the byte offset, and the
offending value -- both as attributes and in its message.

The rule that goes with every one of them: when a function raises, the state and the
outputs it was given are exactly as they were before the call.
"""

from __future__ import annotations


class VGCError(ValueError):
    """Base class of every error vgc_ref raises for bad input."""


class HyperparameterError(VGCError):
    """A hyperparameter (alpha, zeta, tau, residual mode, ...) is invalid.

    Attributes: ``name`` (the parameter) and ``value`` (what was given).
    """

    def __init__(self, name: str, value: object, reason: str):
        self.name = name
        self.value = value
        super().__init__(f"hyperparameter {name}={value!r}: {reason}")


class InputError(VGCError):
    """An input array has the wrong type, dtype, shape or length.

    Attributes: ``name`` (the argument) and ``value`` (a short description of what was given).
    """

    def __init__(self, name: str, value: object, reason: str):
        self.name = name
        self.value = value
        super().__init__(f"{name}: {reason} (got {value})")


class NonFiniteError(VGCError):
    """An input gradient or variance term holds NaN or infinity.

    Attributes: ``name`` ("g" or "s"), ``segment`` (segment id), ``index`` (first bad
    element) and ``value`` (the value there).
    """

    def __init__(self, name: str, segment: int, index: int, value: float, what: str = "non-finite"):
        self.name = name
        self.segment = segment
        self.index = index
        self.value = value
        super().__init__(f"segment {segment}: {name}[{index}] = {value!r} is {what}")


class NegativeVarianceError(NonFiniteError):
    """The variance term s holds a negative value (s must be >= 0)."""

    def __init__(self, segment: int, index: int, value: float):
        super().__init__("s", segment, index, value, what="negative (the variance term must be >= 0)")


class AccumulatorOverflowError(NonFiniteError):
    """Adding this step's input to the state overflows float32 (r + g or v + s is infinite).

    ``name`` is "r + g" or "v + s"; ``value`` is the state element before the addition.
    """

    def __init__(self, name: str, segment: int, index: int, value: float):
        super().__init__(name, segment, index, value, what="overflowing float32 to infinity")


class FormatError(VGCError):
    """A message does not follow the wire format (docs/format.md).

    Attributes: ``field`` (the field's name as in the byte table), ``offset`` (byte
    offset of that field in the message) and ``reason``.
    """

    def __init__(self, field: str, offset: int, reason: str):
        self.field = field
        self.offset = offset
        self.reason = reason
        super().__init__(f"{field} at byte offset {offset}: {reason}")


class SegmentMismatchError(VGCError):
    """Packets or messages do not match the segment layout they are used with.

    Raised by aggregation when a message lacks a segment, carries an unknown one, or
    gives a length n that differs from the expected one.
    """
