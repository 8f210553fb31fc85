"""Benchmark: the hot loops per backend, side by side with the machine's copy bandwidth.

Usage::

    python -m vgc_ref.bench [--quick] [--json PATH] [--n LOG2N] [--backends a,b]

Every row gives the best time of several runs, the effective bandwidth counting only the
minimal bytes (VGC step: 16 read + 8 written per element; decode-and-accumulate: the
messages read + 4 bytes written per element, once into new arrays and once into a
reused ``out``; copy: bytes read + bytes written), the
speed-up over the NumPy reference measured in the same run, and the bandwidth as a share
of a plain NumPy copy of 24 bytes per element (the yardstick). Timings are wall-clock;
nothing here is asserted. ``--quick`` uses fewer repeats and finishes within a minute on
a 2-core machine, JIT compilation included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from vgc_ref import backends as registry
from vgc_ref.encoding import decode_message, encode_message
from vgc_ref.params import VGCParams
from vgc_ref.state import SegmentState
from vgc_ref.variance import dense_grad_var, dense_grad_var_blas

FRACTIONS = (0.001, 0.01, 0.1)
N_RANKS = 4


def _best(fn, repeats: int, setup=None) -> float:
    """Best wall time of ``repeats`` calls of fn (setup runs untimed before each)."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import numba

    try:
        from threadpoolctl import threadpool_info

        blas = [
            f"{i.get('internal_api')} {i.get('version')} {i.get('architecture') or ''}"
            f" ({i.get('num_threads')} threads)"
            for i in threadpool_info()
        ]
    except ImportError:
        blas = []
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "blas": blas,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "load_average": os.getloadavg(),
    }


def step_inputs(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """g ~ N(0, 1) and s = g^2 w / alpha with w ~ U(0, 1/fraction): about ``fraction`` sent.

    From r = v = 0, element i is a candidate when g^2 > alpha s, i.e. when w < 1.
    """
    g = rng.standard_normal(n, dtype=np.float32)
    w = rng.uniform(0.0, 1.0 / fraction, n).astype(np.float32)
    s = g * g * w / np.float32(2.0)
    return g, s


def _loaded(names: list[str]) -> dict[str, registry.Backend]:
    out = {}
    for name in names:
        try:
            backend = registry.get_backend(name)
        except (ImportError, RuntimeError) as err:
            print(f"# backend {name}: skipped ({err})", file=sys.stderr)
            continue
        if name == "numba-cuda":
            from numba import config

            if config.ENABLE_CUDASIM:
                print("# backend numba-cuda: skipped (CUDA simulator: not a timing target)", file=sys.stderr)
                continue
        out[name] = backend
    return out


def run(n: int, repeats: int, backends: dict[str, registry.Backend], quick: bool) -> list[dict]:
    rows: list[dict] = []
    rng = np.random.default_rng(0)

    def add(op, backend, seconds, nbytes, ref_key=None, **extra):
        rows.append(
            {"op": op, "backend": backend, "seconds": seconds, "bytes": nbytes, "ref": ref_key, **extra}
        )

    # The yardstick: a NumPy copy of 12 bytes per element (24 moved).
    src = np.ones(3 * n, np.float32)
    dst = np.zeros_like(src)
    add("copy 12n bytes", "numpy", _best(lambda: np.copyto(dst, src), repeats + 2), 24 * n)

    params = VGCParams()
    for fraction in FRACTIONS:
        g, s = step_inputs(n, fraction, rng)
        state = SegmentState.zeros(n)

        def reset(state=state):
            state.r.fill(0)
            state.v.fill(0)

        for name, backend in backends.items():
            backend.vgc_step(SegmentState.zeros(1024), g[:1024], s[:1024], params)  # compile
            reps = max(2, repeats // 2) if name == "numpy" else repeats
            sec = _best(lambda b=backend, st=state, g=g, s=s: b.vgc_step(st, g, s, params), reps, reset)
            reset()
            sent = backend.vgc_step(state, g, s, params).count / n
            add(f"vgc_step {fraction:.1%}", name, sec, 24 * n, f"vgc_step {fraction:.1%}", sent=sent)

    # Messages of P = 4 workers at 1 %, and their encoding.
    messages = []
    packets = []
    for _ in range(N_RANKS):
        g, s = step_inputs(n, 0.01, rng)
        p = registry.get_backend("numpy").vgc_step(SegmentState.zeros(n), g, s, params)
        packets.append(p)
        messages.append(encode_message([p]))
    msg_bytes = sum(len(m) for m in messages)
    g_hat = [np.empty(n, np.float32)]  # a g_hat buffer reused from step to step
    for name, backend in backends.items():
        backend.decode_accumulate(messages[:1], [n])
        sec = _best(lambda b=backend: b.decode_accumulate(messages, [n]), repeats)
        add("decode_accumulate P=4, 1%", name, sec, msg_bytes + 4 * n, "decode_accumulate")
        sec = _best(lambda b=backend: b.decode_accumulate(messages, [n], out=g_hat), repeats)
        add("decode_accumulate P=4, 1%, out=", name, sec, msg_bytes + 4 * n, "decode_accumulate out")
    add(
        "encode_message 1%",
        "numpy",
        _best(lambda: encode_message([packets[0]]), repeats),
        2 * len(messages[0]),
    )
    add(
        "decode_message 1%",
        "numpy",
        _best(lambda: decode_message(messages[0]), repeats),
        2 * len(messages[0]),
    )

    # Dense layer y = x W + b, B = 256, 1024 x 1024: forward + backward, with and without s.
    batch, n_in, n_out = 256, 1024, 1024
    x = rng.standard_normal((batch, n_in), dtype=np.float32)
    w = (rng.standard_normal((n_in, n_out)) / 32).astype(np.float32)
    b = np.zeros(n_out, np.float32)
    delta = (rng.standard_normal((batch, n_out)) / batch).astype(np.float32)

    def forward_backward(with_variance: bool, grad_var=dense_grad_var_blas):
        y = x @ w + b  # forward
        dx = delta @ w.T  # backward: input gradient
        if with_variance:
            g_w, _, g_b, _ = grad_var(x, delta)
        else:
            g_w = x.T @ delta
            g_b = delta.sum(axis=0, dtype=np.float32)
        return y, dx, g_w, g_b

    # Interleaved: every round times the plain pass and each variance variant once, so a
    # burst of load from elsewhere hits all of them; each row is its best round. "numpy-blas"
    # is dense_grad_var_blas (BLAS order, outside the bit-exact contract); the numpy
    # reference in the fixed order is timed once, on its own, by _ordered_products below.
    variants = {"numpy-blas": dense_grad_var_blas}
    for name, backend in backends.items():
        if name not in ("numpy", "numba-cuda"):
            variants[name] = backend.dense_grad_var
    forward_backward(True)  # warm up BLAS threads and the allocator
    best_plain = float("inf")
    best_var = dict.fromkeys(variants, float("inf"))
    for _ in range(2 * repeats + 3):
        best_plain = min(best_plain, _best(lambda: forward_backward(False), 1))
        for name, gv in variants.items():
            best_var[name] = min(best_var[name], _best(lambda gv=gv: forward_backward(True, gv), 1))
    plain = best_plain
    add("dense fwd+bwd, no variance", "numpy", plain, 0, "dense")
    for name, sec in best_var.items():
        add("dense fwd+bwd + variance", name, sec, 0, "dense", vs_plain=sec / plain)

    # Per-sample gradients, for scale: B outer products, accumulated with their squares.
    samples = 16 if quick else batch

    def per_sample():
        g_w = np.zeros((n_in, n_out), np.float32)
        s_w = np.zeros((n_in, n_out), np.float32)
        for z in range(samples):
            grad = np.outer(x[z], delta[z] * np.float32(batch))  # float32[in, out]
            g_w += grad
            s_w += grad * grad
        return g_w, s_w

    sec = _best(per_sample, 1) * batch / samples
    add(
        "dense per-sample grad+var" + (" (16/256, scaled)" if quick else ""),
        "numpy",
        sec,
        0,
        "dense",
        vs_plain=sec / plain,
    )
    _ordered_products(add, backends, repeats, quick, rng)
    return rows


def _ordered_products(add, backends, repeats: int, quick: bool, rng) -> None:
    """dense_grad_var alone: the fixed order (docs/algorithm.md section 2) against BLAS.

    Two sizes: the 256 x 1024 x 1024 layer above, and the default demo's three layers on
    one of 4 ranks (B = 16; 32 -> 128 -> 64 -> 8). Rows: ``numpy-blas``
    (dense_grad_var_blas), each CPU backend's dense_grad_var (bit-exact), and the numpy
    reference in the fixed order (on the large layer once, and only without --quick).
    Each result is checked against the reference's bits before it is timed.
    """
    sizes = {
        "dense_grad_var B=256 1024x1024": [(256, 1024, 1024)],
        "dense_grad_var demo layers B=16": [(16, 32, 128), (16, 128, 64), (16, 64, 8)],
    }
    for label, shapes in sizes.items():
        layers = [
            (
                rng.standard_normal((b, i), dtype=np.float32),
                (rng.standard_normal((b, o)) / b).astype(np.float32),
            )
            for b, i, o in shapes
        ]
        large = shapes[0][0] > 64
        variants = {"numpy-blas": dense_grad_var_blas}
        for name, backend in backends.items():
            if name not in ("numpy", "numba-cuda"):
                variants[name] = backend.dense_grad_var
        if not (large and quick):
            variants["numpy"] = dense_grad_var
        want = [dense_grad_var(x, d) for x, d in layers]
        for name, gv in variants.items():
            if name != "numpy-blas":
                for (x, d), w in zip(layers, want):
                    got = gv(x, d)
                    same = all(np.array_equal(a.view(np.uint32), b.view(np.uint32)) for a, b in zip(got, w))
                    if not same:
                        raise AssertionError(f"{label}: {name} differs from the reference's bits")

        def all_layers(gv, calls, layers=layers):
            for _ in range(calls):
                for x, d in layers:
                    gv(x, d)

        calls = 1 if large else 50  # small layers: many calls per timing, for the clock
        best = dict.fromkeys(variants, float("inf"))
        for round_ in range(2 * repeats + 1):  # interleaved, as above
            for name, gv in variants.items():
                if name == "numpy" and large and round_ > 0:
                    continue  # the Python loop over 256 samples: once is enough
                best[name] = min(best[name], _best(lambda gv=gv, c=calls: all_layers(gv, c), 1) / calls)
        for name, sec in best.items():
            add(label, name, sec, 0, "dense", vs_blas=sec / best["numpy-blas"])


def _finish(rows: list[dict]) -> None:
    """Add GB/s, the speed-up over the numpy row of the same op, and the share of copy GB/s."""
    copy = next(r for r in rows if r["op"].startswith("copy"))
    copy_gbs = copy["bytes"] / copy["seconds"] / 1e9
    reference = {r["ref"]: r["seconds"] for r in rows if r["backend"] == "numpy" and r["ref"]}
    for r in rows:
        r["gb_per_s"] = r["bytes"] / r["seconds"] / 1e9 if r["bytes"] else None
        r["share_of_copy"] = r["gb_per_s"] / copy_gbs if r["gb_per_s"] else None
        ref = reference.get(r["ref"]) if r["ref"] and r["ref"] != "dense" else None
        r["speedup_vs_numpy"] = ref / r["seconds"] if ref else None


def print_table(rows: list[dict], info: dict, n: int) -> None:
    print(f"# vgc_ref.bench  n = 2^{n.bit_length() - 1} = {n:,} float32 elements")
    for key, value in info.items():
        print(f"# {key}: {value}")
    head = f"{'operation':<40} {'backend':<11} {'time ms':>9} {'GB/s':>7} {'x numpy':>8} {'% copy':>7}  note"
    print(head)
    print("-" * len(head))
    for r in rows:
        gbs = f"{r['gb_per_s']:7.2f}" if r["gb_per_s"] else f"{'':>7}"
        speed = f"{r['speedup_vs_numpy']:8.2f}" if r["speedup_vs_numpy"] else f"{'':>8}"
        share = f"{100 * r['share_of_copy']:6.0f}%" if r["share_of_copy"] else f"{'':>7}"
        notes = []
        if "sent" in r:
            notes.append(f"sent {r['sent']:.2%}")
        if "vs_plain" in r:
            notes.append(f"{r['vs_plain']:.2f}x the no-variance time")
        if "vs_blas" in r:
            notes.append(
                f"{r['vs_blas']:.2f}x the BLAS time"
                + (" (fixed order)" if r["backend"] != "numpy-blas" else "")
            )
        ms = f"{1e3 * r['seconds']:9.2f}"
        print(f"{r['op']:<40} {r['backend']:<11} {ms} {gbs} {speed} {share}  {', '.join(notes)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vgc_ref.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 60 s on 2 cores)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the machine as JSON")
    parser.add_argument("--n", type=int, default=24, metavar="LOG2N", help="segment length 2^LOG2N (24)")
    parser.add_argument(
        "--backends", default=",".join(registry.backend_names()), help="comma-separated backend names"
    )
    args = parser.parse_args(argv)
    n = 1 << args.n
    repeats = 3 if args.quick else 7
    start = time.perf_counter()
    backends = _loaded(args.backends.split(","))
    if "numpy" not in backends:
        backends = {"numpy": registry.get_backend("numpy"), **backends}
    info = machine()
    rows = run(n, repeats, backends, args.quick)
    _finish(rows)
    info["wall_seconds"] = round(time.perf_counter() - start, 1)
    print_table(rows, info, n)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": n, "quick": args.quick, "machine": info, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
