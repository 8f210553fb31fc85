"""Benchmark rows of the numba-cuda backend's device-resident path (run by vgc_ref.bench).

One row per operation, timed with the state, the inputs and the output already on the
device (what a training loop on a GPU does), each after a check against the NumPy
reference (same packet or same g_hat bits; the dense layer against the same in-order
sums computed by the reference of a smaller layer is left to the tests). Each row
gives the bytes the kernels move per element in device memory (HBM) and the share of
the device's bandwidth this reaches, measured against a device-to-device copy in the
same run (``cuda`` copy of 12 bytes per element, 24 moved).

Bytes per element (f: the share of elements sent; each sent element also costs a
4-byte word written to the scratch, read by the gather, written to the packet)::

    vgc_step, hybrid   scan 16 read + write 16 read, 8 written = 40 + 12 f
    strom_step         scan 8 read + write 8 read, 4 written   = 20 + 12 f
    decode_accumulate  4 written per element + 4 read per word of each rank
    dense_grad_var     8 written per output (g_W, s_W); x and D stay in cache

Where the device reports its memory clock and bus width, each row also gives its share of
the theoretical peak bandwidth (:func:`theoretical_bandwidth`: 2 transfers per clock).

Nothing here is asserted; the figures need a GPU (on the simulator the rows are
computed, but the times mean nothing: vgc_ref.bench leaves them out there).
"""

from __future__ import annotations

import time

import numpy as np

from vgc_ref.encoding import encode_message
from vgc_ref.params import StromParams, VGCParams
from vgc_ref.state import SegmentState


def _best(fn, repeats: int, sync) -> float:
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def _inputs(n: int, fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    g = rng.standard_normal(n, dtype=np.float32)
    w = rng.uniform(0.0, 1.0 / fraction, n).astype(np.float32)
    return g, g * g * w / np.float32(2.0)


def theoretical_bandwidth() -> float | None:
    """The current device's peak memory bandwidth in GB/s, or None where it is not reported.

    2 (double data rate, as for HBM and GDDR) x memory clock x bus width: the
    ``MEMORY_CLOCK_RATE`` (kHz) and ``GLOBAL_MEMORY_BUS_WIDTH`` (bits) device attributes.
    None on the simulator and where the driver does not answer.
    """
    from numba import config, cuda

    if config.ENABLE_CUDASIM:
        return None
    try:
        dev = cuda.get_current_device()
        clock_khz, bus_bits = int(dev.MEMORY_CLOCK_RATE), int(dev.GLOBAL_MEMORY_BUS_WIDTH)
    except Exception:  # an attribute this driver does not have
        return None
    if clock_khz <= 0 or bus_bits <= 0:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9


def cuda_rows(n: int, repeats: int, reference, dense: tuple[int, int, int] = (256, 1024, 1024)) -> list[dict]:
    """Rows {op, backend, seconds, bytes, ref, hbm_bytes_per_element, share_of_device_copy, sent}.

    ``dense`` is (B, n_in, n_out) of the dense-layer row. Every row with a bandwidth has
    ``device_gb_per_s`` and ``share_of_peak`` (None where the peak is unknown).
    """
    from numba import cuda

    from vgc_ref.backends import numba_cuda as nc

    rng = np.random.default_rng(1)
    sync = cuda.synchronize
    rows: list[dict] = []
    peak = theoretical_bandwidth()
    src = cuda.to_device(np.ones(3 * n, np.float32))
    dst = cuda.device_array(3 * n, np.float32)
    copy_seconds = _best(lambda: dst.copy_to_device(src), repeats + 2, sync)
    copy_gbs = 24 * n / copy_seconds / 1e9

    def of_peak(gbs: float) -> float | None:
        return gbs / peak if peak else None

    def add(op, seconds, per_element, check, **extra):
        gbs = per_element * n / seconds / 1e9
        rows.append(
            {
                "op": op,
                "backend": "numba-cuda device",
                "seconds": seconds,
                "bytes": 0,  # the host copy is not its yardstick: see share_of_device_copy
                "ref": None,
                "hbm_bytes_per_element": per_element,
                "device_gb_per_s": gbs,
                "share_of_device_copy": gbs / copy_gbs,
                "share_of_peak": of_peak(gbs),
                "checked": check,
                "note": f"{per_element:.1f} B/element, {gbs:.0f} GB/s, "
                f"{100 * gbs / copy_gbs:.0f}% of device copy"
                + (f", {100 * gbs / peak:.0f}% of peak" if peak else "")
                + ("" if check else ", RESULT DIFFERS"),
                **extra,
            }
        )

    rows.append(
        {
            "op": "device copy 12n bytes",
            "backend": "numba-cuda",
            "seconds": copy_seconds,
            "bytes": 0,
            "ref": None,
            "device_gb_per_s": copy_gbs,
            "share_of_device_copy": 1.0,
            "share_of_peak": of_peak(copy_gbs),
            "note": f"{copy_gbs:.0f} GB/s device to device",
        }
    )
    methods = [
        ("vgc_step 1%", VGCParams(), 0.01, 40),
        ("hybrid step 1%", VGCParams(tau=0.5), 0.01, 40),
        ("strom_step", StromParams(tau=2.5), None, 20),
    ]
    messages = []
    for op, params, fraction, base in methods:
        g, s = _inputs(n, fraction or 0.01, rng)
        d_g, d_s = cuda.to_device(g), cuda.to_device(s)
        ref_state = SegmentState.zeros(n)
        dev = nc.DeviceSegmentState.zeros(n)
        if isinstance(params, StromParams):
            want = reference.strom_step(ref_state, g, params)
            got = nc.strom_step(dev, d_g, params)

            def run(dev=dev, d_g=d_g, params=params):
                nc.strom_step(dev, d_g, params)

        else:
            want = reference.vgc_step(ref_state, g, s, params)
            got = nc.vgc_step(dev, d_g, d_s, params)

            def run(dev=dev, d_g=d_g, d_s=d_s, params=params):
                nc.vgc_step(dev, d_g, d_s, params)

        check = got == want
        messages.append(encode_message([want]))
        sent = want.count / n
        # Timed from the first step's state on: r and v grow, as in training.
        add(op, _best(run, repeats, sync), base + 12 * sent, check, sent=sent)
    # decode_accumulate, P = 3 ranks of the steps above, into a device out.
    out = [cuda.device_array(n, np.float32)]
    want = reference.decode_accumulate(messages, [n])[0]
    nc.decode_accumulate(messages, [n], out)
    check = bool(np.array_equal(out[0].copy_to_host().view(np.uint32), want.view(np.uint32)))
    words = sum(len(m) for m in messages) / 4
    add(
        "decode_accumulate P=3, device out",
        _best(lambda: nc.decode_accumulate(messages, [n], out), repeats, sync),
        4 + 4 * words / n,
        check,
    )
    # The dense layer (B = 256, 1024 x 1024 by default).
    batch, n_in, n_out = dense
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    delta = (rng.standard_normal((batch, n_out)) / batch).astype(np.float32)
    nc.dense_grad_var(x, delta)
    seconds = _best(lambda: nc.dense_grad_var(x, delta), repeats, sync)
    gflops = 6 * batch * n_in * n_out / seconds / 1e9
    rows.append(
        {
            "op": f"dense_grad_var B={batch}, {n_in}x{n_out} (host in/out)",
            "backend": "numba-cuda",
            "seconds": seconds,
            "bytes": 0,
            "ref": None,
            "gflop_per_s": gflops,
            "note": f"{gflops:.0f} GFLOP/s of rounded float32 ops (6 per b and output); compute-bound",
        }
    )
    return rows
