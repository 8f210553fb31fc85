"""A cost model of one data-parallel training step, with and without compression.

Time per step on each worker::

    dense:       T = compute + allreduce(4 N bytes)
    compressed:  T = compute + variance + compress + allgather(M bytes each) + aggregate

with N parameters, P workers, link bandwidth W (bytes/s) and per-message latency L (s):

    allreduce (ring):       2 (P-1) L + 2 (P-1)/P * 4N / W
    allgather (ring), M:    (P-1) L + (P-1) M / W          M = 4N / ratio
    compress:               N / compress_rate + S c_seg   (elements/s, from the benchmark)
    aggregate:              P M / aggregate_rate + P S a_seg  (message bytes/s, from the benchmark)
    variance:               variance_fraction * compute   (the extra (x*x)^T (D*D) product)

Compression pays when T_compressed < T_dense, that is when

    A / W > overhead - (P-1) L,   A = 2 (P-1)/P * 4N - (P-1) M,
    overhead = variance + compress + aggregate,

so below the break-even bandwidth W* = A / (overhead - (P-1) L) (any bandwidth when
the right side is <= 0; none when A <= 0, i.e. the allgather moves more bytes than the
allreduce, which happens when ratio < P/2).

with S segments and c_seg, a_seg the fixed seconds per segment (Python calls, input
validation, packet building and encoding; decoding one segment of one message): the
rates describe long segments, the fixed costs short ones (docs/costmodel.md "The
per-segment term"). Both default to 0, the long-segment model.

The model ignores overlap of communication with computation and assumes every message
has the mean size; docs/costmodel.md checks it against the demo's measured timings.

``python -m vgc_ref.costmodel --help`` prints the CLI.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import asdict, dataclass

from vgc_ref.errors import HyperparameterError


@dataclass(frozen=True)
class Workload:
    """What the model needs to know about a training job and a machine.

    Rates are measured: compute and variance by the demo, compress_rate and
    aggregate_rate by ``python -m vgc_ref.bench``.
    """

    n_params: int  # N
    workers: int  # P
    bandwidth: float  # W, bytes/s per link
    latency: float  # L, s per message
    ratio: float  # compression ratio, dense bytes / message bytes (docs/algorithm.md section 8)
    compute: float  # s per step: forward + backward without the variance
    variance_fraction: float = 0.1  # extra compute for s, as a fraction of compute
    compress_rate: float = 5e8  # elements/s of the VGC step
    aggregate_rate: float = 2e9  # message bytes/s of decode-and-accumulate
    segments: int = 1  # S, segments per message
    segment_compress: float = 0.0  # c_seg, fixed s per segment of the compress step
    segment_aggregate: float = 0.0  # a_seg, fixed s per segment of each decoded message

    def __post_init__(self) -> None:
        for name in ("n_params", "workers", "segments"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise HyperparameterError(name, value, "must be an integer >= 1")
        for name in ("bandwidth", "ratio", "compress_rate", "aggregate_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise HyperparameterError(name, value, "must be finite and > 0")
        for name in ("latency", "compute", "variance_fraction", "segment_compress", "segment_aggregate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise HyperparameterError(name, value, "must be finite and >= 0")


@dataclass(frozen=True)
class Prediction:
    """Predicted seconds per step, by part, and what follows from them."""

    dense_comm: float
    dense_step: float
    variance: float
    compress: float
    aggregate: float
    compressed_comm: float
    compressed_step: float
    speedup: float  # dense_step / compressed_step
    break_even_bandwidth: float  # bytes/s; inf: compression always pays; 0: never


def allreduce_time(nbytes: float, workers: int, bandwidth: float, latency: float) -> float:
    """Ring allreduce: reduce-scatter then allgather, 2 (P-1) rounds of nbytes / P."""
    p = workers
    return 2 * (p - 1) * latency + 2 * (p - 1) / p * nbytes / bandwidth


def allgather_time(message_bytes: float, workers: int, bandwidth: float, latency: float) -> float:
    """Ring allgather of one message of message_bytes from each of P workers."""
    p = workers
    return (p - 1) * latency + (p - 1) * message_bytes / bandwidth


def predict(w: Workload) -> Prediction:
    """Evaluate the model for one workload."""
    dense_bytes = 4 * w.n_params
    message = dense_bytes / w.ratio  # M
    dense_comm = allreduce_time(dense_bytes, w.workers, w.bandwidth, w.latency)
    variance = w.variance_fraction * w.compute
    compress = w.n_params / w.compress_rate + w.segments * w.segment_compress
    aggregate = w.workers * message / w.aggregate_rate + w.workers * w.segments * w.segment_aggregate
    comm = allgather_time(message, w.workers, w.bandwidth, w.latency)
    dense_step = w.compute + dense_comm
    compressed_step = w.compute + variance + compress + aggregate + comm

    saved_bytes = 2 * (w.workers - 1) / w.workers * dense_bytes - (w.workers - 1) * message  # A
    overhead = variance + compress + aggregate - (w.workers - 1) * w.latency
    if saved_bytes <= 0:
        break_even = 0.0
    elif overhead <= 0:
        break_even = math.inf
    else:
        break_even = saved_bytes / overhead
    return Prediction(
        dense_comm=dense_comm,
        dense_step=dense_step,
        variance=variance,
        compress=compress,
        aggregate=aggregate,
        compressed_comm=comm,
        compressed_step=compressed_step,
        speedup=dense_step / compressed_step,
        break_even_bandwidth=break_even,
    )


_UNITS = {
    "": 1.0,
    "bit": 1 / 8,
    "kbit": 1e3 / 8,
    "mbit": 1e6 / 8,
    "gbit": 1e9 / 8,
    "b": 1.0,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
}
_TIME_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def parse_bandwidth(text: str) -> float:
    """'10Gbit' -> 1.25e9 bytes/s; '100MB' -> 1e8 bytes/s (a bare number is bytes/s)."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([A-Za-z/]*?)(?:/s|ps)?\s*", text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(f"bandwidth {text!r}: use e.g. 10Gbit, 100Mbit, 1.25GB or bytes/s")
    return float(m.group(1)) * _UNITS[unit]


def parse_time(text: str) -> float:
    """'5us' -> 5e-6 s; a bare number is seconds."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([a-z]*)\s*", text)
    if m is None or m.group(2) not in _TIME_UNITS:
        raise argparse.ArgumentTypeError(f"time {text!r}: use e.g. 5us, 2ms or seconds")
    return float(m.group(1)) * _TIME_UNITS[m.group(2)]


def _fmt_time(t: float) -> str:
    return f"{t * 1e3:10.3f} ms"


def _fmt_bw(b: float) -> str:
    if math.isinf(b):
        return "any bandwidth (the overhead is below the latency saved)"
    if b == 0:
        return "never (the allgather moves more bytes than the allreduce)"
    return f"{b * 8 / 1e9:.3f} Gbit/s ({b / 1e6:.1f} MB/s)"


def report(w: Workload, p: Prediction) -> str:
    """A small table of the prediction."""
    lines = [
        f"N = {w.n_params:,} parameters, P = {w.workers} workers, "
        f"link {w.bandwidth * 8 / 1e9:.3g} Gbit/s, latency {w.latency * 1e6:.3g} us, ratio {w.ratio:.1f}x",
        "",
        f"{'part':<26}{'dense':>14}{'compressed':>14}",
        f"{'compute':<26}{_fmt_time(w.compute):>14}{_fmt_time(w.compute):>14}",
        f"{'variance':<26}{'':>14}{_fmt_time(p.variance):>14}",
        f"{'compress':<26}{'':>14}{_fmt_time(p.compress):>14}",
        f"{'communicate':<26}{_fmt_time(p.dense_comm):>14}{_fmt_time(p.compressed_comm):>14}",
        f"{'aggregate':<26}{'':>14}{_fmt_time(p.aggregate):>14}",
        f"{'step':<26}{_fmt_time(p.dense_step):>14}{_fmt_time(p.compressed_step):>14}",
        "",
        f"predicted speed-up of compression: {p.speedup:.2f}x",
        f"compression pays below: {_fmt_bw(p.break_even_bandwidth)}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from vgc_ref._cli import ArgumentParser

    parser = ArgumentParser(
        prog="python -m vgc_ref.costmodel",
        description="Predict time per step with and without gradient compression (see module docstring).",
    )
    parser.add_argument("--params", type=float, required=True, help="number of parameters N (e.g. 25e6)")
    parser.add_argument("--workers", type=int, required=True, help="number of workers P")
    parser.add_argument("--bandwidth", type=parse_bandwidth, required=True, help="per link, e.g. 10Gbit")
    parser.add_argument("--latency", type=parse_time, default=5e-6, help="per message, e.g. 5us")
    parser.add_argument("--ratio", type=float, required=True, help="measured compression ratio")
    parser.add_argument(
        "--compute", type=parse_time, required=True, help="forward+backward per step, e.g. 50ms"
    )
    parser.add_argument("--variance-fraction", type=float, default=0.1, help="extra compute for s (fraction)")
    parser.add_argument("--compress-rate", type=float, default=5e8, help="VGC step, elements/s")
    parser.add_argument(
        "--aggregate-rate", type=float, default=2e9, help="decode+accumulate, message bytes/s"
    )
    parser.add_argument("--segments", type=int, default=1, help="segments per message S")
    parser.add_argument(
        "--segment-compress",
        type=parse_time,
        default=0.0,
        help="fixed cost per segment of compress, e.g. 0.2ms",
    )
    parser.add_argument(
        "--segment-aggregate", type=parse_time, default=0.0, help="fixed cost per decoded segment, e.g. 20us"
    )
    parser.add_argument("--json", action="store_true", help="print the prediction as JSON")
    args = parser.parse_args(argv)
    try:
        w = Workload(
            n_params=int(args.params),
            workers=args.workers,
            bandwidth=args.bandwidth,
            latency=args.latency,
            ratio=args.ratio,
            compute=args.compute,
            variance_fraction=args.variance_fraction,
            compress_rate=args.compress_rate,
            aggregate_rate=args.aggregate_rate,
            segments=args.segments,
            segment_compress=args.segment_compress,
            segment_aggregate=args.segment_aggregate,
        )
    except HyperparameterError as err:
        parser.error(str(err))
    p = predict(w)
    if args.json:
        import json

        print(json.dumps({"workload": asdict(w), "prediction": asdict(p)}, indent=2))
    else:
        print(report(w, p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
