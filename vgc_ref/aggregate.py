"""Aggregation across P workers (docs/algorithm.md section 7).

Every worker receives all P messages and computes, per segment, in float32::

    acc <- +0.0 everywhere
    for w = 0 .. P-1 (rank order):  acc[i] <- acc[i] + q_{w,i}   for each sent i
    g_hat <- acc / float32(P)

Adding in rank order makes g_hat bit-identical on every worker and in any
single-process simulation of the P workers. (Elements a worker did not send count as
+0.0; adding +0.0 never changes acc, which can never be -0.0, so skipping them is exact.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from vgc_ref.encoding import decode_message
from vgc_ref.errors import FormatError, InputError, SegmentMismatchError
from vgc_ref.packet import MAX_SEGMENT_LEN, Packet, packet_entries
from vgc_ref.state import check_vector


def check_messages(messages: object) -> list:
    """``messages`` as a list of P >= 1 messages: a sequence of them, not one message (whose
    items would be ints), and not empty. The messages themselves are checked by the decoder.

    Shared by every backend's decode_accumulate, so all reject the same input alike.
    """
    if isinstance(messages, (bytes, bytearray, memoryview, str)):
        raise InputError(
            "messages",
            f"one {type(messages).__name__} object",
            "must be a sequence of P messages, one per rank (for one rank: [message])",
        )
    if not isinstance(messages, Iterable):
        raise InputError("messages", type(messages).__name__, "must be a sequence of P messages")
    messages = list(messages)
    if not messages:
        raise InputError("messages", "0 messages", "needs at least one worker's message")
    return messages


def check_sizes(sizes: object) -> list[int]:
    """``sizes`` as a list of int: a sequence of integers 0 .. 2^27, no floats or strings."""
    if isinstance(sizes, (str, bytes, bytearray)) or not isinstance(sizes, Iterable):
        raise InputError("sizes", type(sizes).__name__, "must be a sequence of segment lengths")
    out = []
    for j, n in enumerate(sizes):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise InputError(f"sizes[{j}]", f"{n!r} ({type(n).__name__})", "must be an integer")
        if not 0 <= n <= MAX_SEGMENT_LEN:
            raise InputError(f"sizes[{j}]", repr(n), f"must be in 0 .. 2^27 = {MAX_SEGMENT_LEN}")
        out.append(int(n))
    return out


def _check_layout(packet_lists: Sequence[Sequence[Packet]], sizes: Sequence[int]) -> None:
    """Every rank must send each segment id 0 .. len(sizes)-1 exactly once, with its n."""
    for rank, packets in enumerate(packet_lists):
        ids = sorted(p.segment_id for p in packets)
        if ids != list(range(len(sizes))):
            raise SegmentMismatchError(
                f"rank {rank}: segment ids {ids[:8]}{'...' if len(ids) > 8 else ''} "
                f"differ from the expected 0 .. {len(sizes) - 1}"
            )
        for p in packets:
            if p.n != sizes[p.segment_id]:
                raise SegmentMismatchError(
                    f"rank {rank}: segment {p.segment_id} has n = {p.n}, expected {sizes[p.segment_id]}"
                )


def _check_out(out: Sequence[np.ndarray] | None, sizes: Sequence[int]) -> None:
    if out is None:
        return
    if len(out) != len(sizes):
        raise InputError("out", f"{len(out)} arrays", f"must hold one array per segment ({len(sizes)})")
    for j, (buf, n) in enumerate(zip(out, sizes)):
        check_vector(f"out[{j}]", buf, n)
        if not buf.flags.writeable:
            raise InputError(f"out[{j}]", "a read-only array", "must be writeable")


def rank_ordered_segments(
    packet_lists: Sequence[Sequence[Packet]],
    sizes: Sequence[int],
    out: Sequence[np.ndarray] | None = None,
) -> tuple[list[int], list[list[Packet]]]:
    """Check P workers' packets against the layout and ``out``; regroup them by segment.

    Every backend's aggregation starts here, so all of them reject the same inputs with
    the same errors: :class:`~vgc_ref.errors.InputError` for no ranks or a bad ``out``,
    :class:`~vgc_ref.errors.SegmentMismatchError` for a layout mismatch.

    Returns
    -------
    sizes : list of int
        n of each segment id 0 .. S-1.
    segments : list of S lists of P packets
        ``segments[j][w]`` is rank w's packet of segment j: rank order.
    """
    if len(packet_lists) == 0:
        raise InputError("packet_lists", "0 ranks", "needs at least one worker's packets")
    sizes = check_sizes(sizes)
    _check_layout(packet_lists, sizes)
    _check_out(out, sizes)
    by_id = [{p.segment_id: p for p in packets} for packets in packet_lists]
    return sizes, [[ranks[j] for ranks in by_id] for j in range(len(sizes))]


def aggregate_packets(
    packet_lists: Sequence[Sequence[Packet]],
    sizes: Sequence[int],
    out: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Rank-ordered mean of P workers' packets, segment by segment.

    Parameters
    ----------
    packet_lists : sequence of P sequences of Packet
        ``packet_lists[w]`` is worker w's packets (any codec), one per segment id
        0 .. S-1, in any order.
    sizes : sequence of int
        n of each segment id 0 .. S-1.
    out : sequence of S float32 arrays, optional
        Where to write g_hat; checked before anything is written.

    Returns
    -------
    list of S float32 arrays
        g_hat per segment (``out`` itself when given).
    """
    sizes, segments = rank_ordered_segments(packet_lists, sizes, out)
    p32 = np.float32(len(packet_lists))
    g_hat = []
    for n, packets in zip(sizes, segments):
        acc = np.zeros(n, np.float32)  # +0.0 everywhere
        for p in packets:  # rank order
            index, value = packet_entries(p)  # int64[count] (unique), float32[count]
            acc[index] = acc[index] + value
        g_hat.append(acc / p32)
    if out is None:
        return g_hat
    for buf, g in zip(out, g_hat):
        buf[...] = g
    return list(out)


def decode_accumulate(
    messages: Sequence[bytes],
    sizes: Sequence[int],
    out: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Decode P workers' messages (rank order) and return the rank-ordered mean g_hat.

    Every message is decoded and checked against the segment layout before anything
    is written. A :class:`~vgc_ref.errors.FormatError` gets the attribute ``rank`` and
    names the rank in its message. ``messages`` must be a sequence (one bytes object is
    refused, not read as a sequence of ints) and ``sizes`` integers.
    """
    packet_lists = []
    for rank, message in enumerate(check_messages(messages)):
        try:
            packet_lists.append(decode_message(message))
        except FormatError as err:
            wrapped = FormatError(err.field, err.offset, f"{err.reason} (message of rank {rank})")
            wrapped.rank = rank
            raise wrapped from err
    return aggregate_packets(packet_lists, sizes, out)
