"""The cost of the variance term relative to a layer's forward and backward pass.

    python -m mpi_demo.varcost            # the demo's layers, batch 16 (one rank's share of 64)
    python -m mpi_demo.varcost --batch 64

For each layer of the demo's models, with the fixed-order Numba primitives the demo uses
(:mod:`vgc_ref.backends.numba_portable`, :mod:`vgc_ref.backends.numba_conv`), one thread:

* forward + backward: ``y = mm(X, W)`` (+ bias), ``dX = mm_nt(D, W)`` (and col2im for a
  convolution), ``g_W = mm_tn(X, D)``, ``g_b = colsum(D)``;
* variance: dense ``mm_tn(x*x, D*D)`` and ``colsum(D*D)``; convolution exact
  (``numba_conv.conv_var(..., "exact")``) and approx (``"approx"``).

``--segments`` also measures the cost model's per-segment term (docs/costmodel.md): the
time of one VGC compress step and of one decode-and-accumulate of 4 messages over S
segments of 64 elements, per segment, for each backend.

Each figure is the median over repeats of the time of the whole operation; the printed
fraction is variance / (forward + backward). Random inputs of the layer's shapes.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from mpi_demo import cnn
from vgc_ref.variance import col2im1d, im2col1d


def _median_time(fn, repeats: int) -> float:
    fn()  # compile / warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def dense_layer(batch: int, n_in: int, n_out: int, repeats: int) -> dict:
    from vgc_ref.backends import numba_portable as op

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, n_in)).astype(np.float32)
    w = rng.standard_normal((n_in, n_out)).astype(np.float32)
    d = rng.standard_normal((batch, n_out)).astype(np.float32)

    def fwd_bwd():
        op.matmul(x, w)
        op.matmul_nt(d, w)
        op.matmul_tn(x, d)
        op.column_sums(d)

    def var():
        d2 = d * d
        op.matmul_tn(x * x, d2)
        op.column_sums(d2)

    fb = _median_time(fwd_bwd, repeats)
    return {
        "layer": f"dense {n_in}x{n_out}",
        "fwd_bwd_ms": 1e3 * fb,
        "var_ms": 1e3 * _median_time(var, repeats),
    }


def conv_layer(
    batch: int, length: int, c_in: int, c_out: int, geom: tuple[int, int, int], repeats: int
) -> list[dict]:
    from vgc_ref.backends import numba_conv
    from vgc_ref.backends import numba_portable as op

    kernel, stride, padding = geom
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, length, c_in)).astype(np.float32)
    w = rng.standard_normal((kernel * c_in, c_out)).astype(np.float32)
    cols = im2col1d(x, kernel, stride, padding)
    n_pos = cols.shape[1]
    d = rng.standard_normal((batch, n_pos, c_out)).astype(np.float32)
    flat_cols, flat_d = cols.reshape(batch * n_pos, -1), d.reshape(batch * n_pos, -1)

    def fwd_bwd():
        c = im2col1d(x, kernel, stride, padding)
        op.matmul(c.reshape(batch * n_pos, -1), w)
        dc = op.matmul_nt(flat_d, w).reshape(batch, n_pos, -1)
        col2im1d(dc, length, kernel, stride, padding)
        op.matmul_tn(flat_cols, flat_d)
        op.column_sums(flat_d)

    fb = _median_time(fwd_bwd, repeats)
    name = f"conv k{kernel} s{stride} {c_in}->{c_out} x{length}"
    return [
        {
            "layer": f"{name} ({form})",
            "fwd_bwd_ms": 1e3 * fb,
            "var_ms": 1e3 * _median_time(lambda f=form: numba_conv.conv_var(cols, d, f), repeats),
        }
        for form in ("exact", "approx")
    ]


def measure(batch: int, repeats: int, channels=(32, 32, 32), length: int = 40) -> list[dict]:
    rows = []
    c_in = 1
    for geom, c_out, n in zip(cnn.GEOMETRY, channels, cnn.lengths(length)):
        rows += conv_layer(batch, n, c_in, c_out, geom, repeats)
        c_in = c_out
    rows.append(dense_layer(batch, cnn.lengths(length)[-1] * channels[-1], 10, repeats))
    for n_in, n_out in ((40, 128), (128, 64), (64, 10), (1024, 1024)):
        rows.append(dense_layer(batch, n_in, n_out, repeats))
    for r in rows:
        r["fraction"] = r["var_ms"] / r["fwd_bwd_ms"]
    return rows


def segment_costs(repeats: int) -> list[dict]:
    """Seconds per segment of compress and of decoding one message, S segments of 64 elements."""
    from vgc_ref import Compressor
    from vgc_ref.backends import get_backend

    rng = np.random.default_rng(0)
    rows = []
    for backend in ("numpy", "numba-cpu"):
        for n_seg in (1, 8, 64):
            sizes = [64] * n_seg
            comp = Compressor(sizes, "vgc", alpha=2.0, backend=backend)
            g = [rng.standard_normal(64).astype(np.float32) * np.float32(0.01) for _ in sizes]
            s = [x * x for x in g]
            msg = comp.message(g, s)
            be = get_backend(backend)
            rows.append(
                {
                    "backend": backend,
                    "segments": n_seg,
                    "compress_s": _median_time(lambda c=comp, g=g, s=s: c.message(g, s), repeats) / n_seg,
                    "aggregate_s": _median_time(
                        lambda b=be, m=msg, z=sizes: b.decode_accumulate([m] * 4, z), repeats
                    )
                    / (4 * n_seg),
                }
            )
    return rows


def main(argv=None) -> int:
    from vgc_ref._cli import ArgumentParser

    p = ArgumentParser(prog="python -m mpi_demo.varcost", description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16, help="mini-batch size (default: %(default)s)")
    p.add_argument(
        "--repeats",
        type=int,
        default=50,
        help="timings per figure; the median is shown (default: %(default)s)",
    )
    p.add_argument("--segments", action="store_true", help="also the per-segment fixed costs")
    args = p.parse_args(argv)
    print(f"batch {args.batch}, median of {args.repeats}, one thread, load average {os.getloadavg()[0]:.1f}")
    print(f"{'layer':<34} {'fwd+bwd ms':>10} {'var ms':>8} {'var/(fwd+bwd)':>14}")
    for r in measure(args.batch, args.repeats):
        print(f"{r['layer']:<34} {r['fwd_bwd_ms']:>10.3f} {r['var_ms']:>8.3f} {100 * r['fraction']:>13.0f}%")
    if args.segments:
        head = f"{'backend':<10} {'segments':>8} {'compress us/segment':>20}"
        print(f"\n{head} {'aggregate us/segment/message':>29}")
        for r in segment_costs(args.repeats):
            print(
                f"{r['backend']:<10} {r['segments']:>8} {1e6 * r['compress_s']:>20.0f} "
                f"{1e6 * r['aggregate_s']:>29.0f}"
            )
    return 0


if __name__ == "__main__":
    # One thread unless the environment says otherwise; not at import (a changed
    # NUMBA_NUM_THREADS breaks the next compilation once Numba's threads run). numpy is
    # imported above, but Numba is imported only inside the measurements.
    for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    sys.exit(main())
