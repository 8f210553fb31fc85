"""Benchmark: the hot loops per backend, side by side with the machine's copy bandwidth.

Usage::

    python -m vgc_ref.bench [--quick] [--json PATH] [--n LOG2N] [--backends a,b] [--ordered | --step]

Arguments are checked before anything is timed (exit status 2 and one line naming the
argument): LOG2N in 10 .. 27 (2^27 is the largest segment of the format) and small
enough for the memory available, known backend names, and a ``--json`` path that can be
written. A line on stderr reports each measurement as it is taken.

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
import contextlib
import json
import os
import platform
import sys
import time

import numpy as np

from vgc_ref import backends as registry
from vgc_ref._cli import ArgumentParser, output_file_problem, usage_error
from vgc_ref.encoding import decode_message, encode_message
from vgc_ref.params import VGCParams
from vgc_ref.state import SegmentState
from vgc_ref.variance import dense_grad_var, dense_grad_var_blas

FRACTIONS = (0.001, 0.01, 0.1)
N_RANKS = 4
#: The range of --n: 2^10 elements (the compile call's length) up to the largest segment.
MIN_LOG2N, MAX_LOG2N = 10, 27
#: Peak memory of a run, measured with /usr/bin/time at n = 2^20 and 2^22 (numpy backend):
#: about 80 bytes per element on top of 250 MB (the dense-layer matrices, NumPy, Numba).
BYTES_PER_ELEMENT, BASE_BYTES = 80, 250 * 2**20


def memory_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes; None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


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


def run(
    n: int,
    repeats: int,
    backends: dict[str, registry.Backend],
    quick: bool,
    ordered_only: bool = False,
    step_only: bool = False,
) -> list[dict]:
    """Every row of the table; ``ordered_only``: the copy yardstick and the ordered-products
    rows only (``--ordered``); ``step_only``: the copy yardstick and numba-cpu's step
    against the fused yardstick only (``--step``)."""
    rows: list[dict] = []
    rng = np.random.default_rng(0)

    def add(op, backend, seconds, nbytes, ref_key=None, **extra):
        rows.append(
            {"op": op, "backend": backend, "seconds": seconds, "bytes": nbytes, "ref": ref_key, **extra}
        )
        print(f"# measured {op} ({backend}): {1e3 * seconds:.2f} ms", file=sys.stderr, flush=True)

    # The yardstick: a NumPy copy of 12 bytes per element (24 moved).
    src = np.ones(3 * n, np.float32)
    dst = np.zeros_like(src)
    add("copy 12n bytes", "numpy", _best(lambda: np.copyto(dst, src), repeats + 2), 24 * n)

    if ordered_only:
        _ordered_products(add, backends, repeats, quick, rng)
        return rows
    if step_only:
        _step_vs_yardstick(add, n, repeats, rng)
        return rows

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
            if name == "numba-cpu":  # the one-pass step for scratch states (the DDP hook's)
                step = backend.vgc_step_scratch
                sec = _best(lambda b=step, st=state, g=g, s=s: b(st, g, s, params), reps, reset)
                add(f"vgc_step_scratch {fraction:.1%}", name, sec, 24 * n, f"vgc_step {fraction:.1%}")

    if "numba-cpu" in backends:
        _step_vs_yardstick(add, n, repeats, rng)

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
    if "numba-cuda" in backends:  # a GPU (the simulator is left out): the device-resident rows
        from vgc_ref.backends.cuda_bench import cuda_rows

        rows += cuda_rows(n, repeats, registry.get_backend("numpy"))
    return rows


def small_segments(repeats: int, log2n: range = range(8, 21)) -> list[dict]:
    """numba-cpu's vgc_step on each path at n = 2^8 .. 2^20: the serial twin and the parallel kernels.

    Interleaved: each round times both paths once per size, so load from elsewhere hits
    both. Returns best and median seconds per path; numba_cpu.SERIAL_MAX is where the
    serial path stops paying (docs/performance.md, "Small segments").
    """
    from vgc_ref.backends import numba_cpu

    backend = registry.get_backend("numba-cpu")
    rng = np.random.default_rng(0)
    params = VGCParams()
    limits = {"serial": 1 << 30, "parallel": -1}
    saved = numba_cpu.SERIAL_MAX
    rows = []
    try:
        for k in log2n:
            n = 1 << k
            g, s = step_inputs(n, 0.01, rng)
            state = SegmentState.zeros(n)

            def step(state=state, g=g, s=s):
                state.r.fill(0)
                state.v.fill(0)
                t0 = time.perf_counter()
                backend.vgc_step(state, g, s, params)
                return time.perf_counter() - t0

            times: dict[str, list[float]] = {p: [] for p in limits}
            for limit in limits.values():  # compile both
                numba_cpu.SERIAL_MAX = limit
                step()
            for _ in range(repeats):
                for p, limit in limits.items():
                    numba_cpu.SERIAL_MAX = limit
                    times[p].append(step())
            row = {"n": n}
            for p in limits:
                row[f"{p}_best"] = min(times[p])
                row[f"{p}_median"] = float(np.median(times[p]))
            rows.append(row)
            print(
                f"# n = 2^{k}: serial {1e3 * row['serial_median']:.3f} ms, "
                f"parallel {1e3 * row['parallel_median']:.3f} ms (medians)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        numba_cpu.SERIAL_MAX = saved
    return rows


def print_small_segments(rows: list[dict], info: dict) -> None:
    print("# vgc_ref.bench --small-segments: numba-cpu vgc_step, serial twin against parallel kernels")
    for key in ("cpu", "cores", "numba_threads", "load_average"):
        print(f"# {key}: {info[key]}")
    head = (
        f"{'n':>9} {'serial best':>12} {'median':>9} {'parallel best':>14} {'median':>9} "
        f"{'parallel/serial (median)':>25}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['n']:>9,} {1e3 * r['serial_best']:9.3f} ms {1e3 * r['serial_median']:6.3f} ms "
            f"{1e3 * r['parallel_best']:11.3f} ms {1e3 * r['parallel_median']:6.3f} ms "
            f"{r['parallel_median'] / r['serial_median']:25.2f}"
        )


def _one_thread():
    """A context where BLAS (threadpoolctl) and Numba use one thread; None without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    import numba

    @contextlib.contextmanager
    def limits():
        saved = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            with threadpool_limits(1):
                yield
        finally:
            numba.set_num_threads(saved)

    return limits()


_FUSED = None


def fused_yardstick():
    """The one-pass fused yardstick: the least a VGC step over 4 float32 arrays can cost.

    One pass reads g, s, r and v and writes r and v (24 bytes per element), with a
    criterion: ``r' = r + g``, ``v' = v + s``; where ``r'^2 > alpha v'`` both become 0,
    elsewhere r = r' and v = zeta v'; it returns the count per chunk. It checks nothing,
    finds no exponent and writes no words, and its loop vectorizes, so it runs at the
    machine's memory bandwidth; the real step's time over it is what its checks, its
    second read and its words cost. Compiled on first use (cached on disk).
    """
    global _FUSED
    if _FUSED is None:
        from numba import njit, prange

        zero = np.float32(0)

        @njit(cache=True, fastmath=False, nogil=True)
        def chunk_pass(g, s, r, v, alpha, zeta):
            sent = np.int32(0)
            for i in range(g.shape[0]):
                ri = r[i] + g[i]
                vi = v[i] + s[i]
                send = ri * ri > alpha * vi
                r[i] = zero if send else ri
                v[i] = zero if send else zeta * vi
                sent += np.int32(send)
            return sent

        @njit(parallel=True, cache=True, fastmath=False, nogil=True)
        def fused(g, s, r, v, alpha, zeta, chunk, counts):
            n = g.shape[0]
            for c in prange(counts.shape[0]):
                lo = c * chunk
                hi = min(lo + chunk, n)
                counts[c] = chunk_pass(g[lo:hi], s[lo:hi], r[lo:hi], v[lo:hi], alpha, zeta)

        _FUSED = fused
    return _FUSED


def _step_vs_yardstick(add, n: int, repeats: int, rng) -> None:
    """numba-cpu's vgc_step and vgc_step_scratch (1 % sent) against the fused yardstick,
    with 1 thread and with the machine's threads, interleaved: each round times the
    yardstick, then each step, from the same fresh state. Rows give best and median; the
    steps' rows give both as a ratio to the yardstick's with the same threads, and the
    many-thread step's median over the 1-thread one's (never slower with more threads).

    Two more rows per thread count time the DDP hook's two ways to step a committed
    state without writing it: copying r and v into a spare and stepping the spare in
    place, against stepping from the committed state into the spare (``out``). Two last
    rows time vgc_step_scratch, in place and into the spare, at 12 % sent, about what
    the hook's benchmark models send (python -m vgc_ref.torch.bench)."""
    import numba

    from vgc_ref.backends import numba_cpu

    fused = fused_yardstick()
    params = VGCParams()
    g, s = step_inputs(n, 0.01, rng)
    g12, s12 = step_inputs(n, 0.12, rng)
    state = SegmentState.zeros(n)
    spare = SegmentState.zeros(n)
    counts = np.empty(-(-n // numba_cpu.CHUNK), np.int32)
    alpha, zeta = params.alpha32, params.zeta32

    def copy_then_step():
        np.copyto(spare.r, state.r)
        np.copyto(spare.v, state.v)
        numba_cpu.vgc_step_scratch(spare, g, s, params)

    runs = {
        "yardstick": lambda: fused(g, s, state.r, state.v, alpha, zeta, numba_cpu.CHUNK, counts),
        "step": lambda: numba_cpu.vgc_step(state, g, s, params),
        "scratch": lambda: numba_cpu.vgc_step_scratch(state, g, s, params),
        "copy": copy_then_step,
        "into": lambda: numba_cpu.vgc_step_scratch(state, g, s, params, out=spare),
        "scratch 12%": lambda: numba_cpu.vgc_step_scratch(state, g12, s12, params),
        "into 12%": lambda: numba_cpu.vgc_step_scratch(state, g12, s12, params, out=spare),
    }

    def timed(fn) -> float:
        state.r.fill(0)
        state.v.fill(0)
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    saved = numba.get_num_threads()
    step_median = {}
    try:
        for threads in sorted({1, saved}):
            numba.set_num_threads(threads)
            for fn in runs.values():  # compile, and warm the pages
                timed(fn)
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(2 * repeats + 1):
                for name, fn in runs.items():
                    times[name].append(timed(fn))
            yard_best, yard_median = min(times["yardstick"]), float(np.median(times["yardstick"]))
            add(f"fused yardstick, {threads} thread(s)", "numba", yard_best, 24 * n, None, median=yard_median)
            copy_median = float(np.median(times["copy"]))
            labels = {
                "step": "vgc_step 1%",
                "scratch": "vgc_step_scratch 1%",
                "copy": "copy r, v + vgc_step_scratch 1%",
                "into": "vgc_step_scratch into a spare 1%",
                "scratch 12%": "vgc_step_scratch 12%",
                "into 12%": "vgc_step_scratch into a spare 12%",
            }
            for name, label in labels.items():
                median = float(np.median(times[name]))
                step_median[name, threads] = median
                extra = {}
                if name in ("copy", "into"):
                    extra["vs_copy_median"] = median / copy_median
                elif threads > 1 and name in ("step", "scratch"):
                    extra["vs_one_thread"] = median / step_median[name, 1]
                add(
                    f"{label}, {threads} thread(s)",
                    "numba-cpu",
                    min(times[name]),
                    24 * n,
                    None,
                    median=median,
                    vs_fused=min(times[name]) / yard_best,
                    vs_fused_median=median / yard_median,
                    **extra,
                )
    finally:
        numba.set_num_threads(saved)


def _ordered_products(add, backends, repeats: int, quick: bool, rng) -> None:
    """dense_grad_var alone: the fixed order (docs/algorithm.md section 2) against BLAS.

    Three rows of sizes: the 256 x 1024 x 1024 layer above with the machine's threads, the
    same layer with one thread for BLAS and for Numba (threadpoolctl; left out without
    it), and the default demo's three layers on one of 4 ranks (B = 16; 32 -> 128 -> 64
    -> 8). Rows: ``numpy-blas`` (dense_grad_var_blas), each CPU backend's dense_grad_var
    (bit-exact; numba-cpu's is the register-tiled kernel), ``numba-rows`` (the row-streamed
    kernel of numba_portable, which the demo's "ordered" products use below
    numba_cpu.TILED_FROM multiply-adds; with numba-cpu only), and the numpy reference in
    the fixed order (on the large layer once, and only without --quick, with the
    machine's threads). Each result is checked against the
    reference's bits before it is timed. Every row has its best and its median over the
    interleaved rounds, and both as a ratio to BLAS's best and median in the same run.
    """
    sizes = {
        "dense_grad_var B=256 1024x1024": ([(256, 1024, 1024)], None),
        "dense_grad_var B=256 1024x1024 1 thread": ([(256, 1024, 1024)], _one_thread()),
        "dense_grad_var demo layers B=16": ([(16, 32, 128), (16, 128, 64), (16, 64, 8)], None),
    }
    for label, (shapes, context) in sizes.items():
        if label.endswith("1 thread") and context is None:
            print(f"# {label}: skipped (no threadpoolctl to limit BLAS's threads)", file=sys.stderr)
            continue
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
        if "numba-cpu" in backends:  # the row-streamed kernel, for comparison with the tiled one
            from vgc_ref.backends import numba_portable

            variants["numba-rows"] = numba_portable.dense_grad_var
        if not (large and quick) and context is None:
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
        times: dict[str, list[float]] = {name: [] for name in variants}
        with context if context is not None else contextlib.nullcontext():
            for round_ in range(2 * repeats + 1):  # interleaved, as above
                for name, gv in variants.items():
                    if name == "numpy" and large and round_ > 0:
                        continue  # the Python loop over 256 samples: once is enough
                    times[name].append(_best(lambda gv=gv, c=calls: all_layers(gv, c), 1) / calls)
        blas_best, blas_median = min(times["numpy-blas"]), float(np.median(times["numpy-blas"]))
        for name, t in times.items():
            median = float(np.median(t))
            add(
                label,
                name,
                min(t),
                0,
                "dense",
                median=median,
                vs_blas=min(t) / blas_best,
                vs_blas_median=median / blas_median,
            )


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
                f"{r['vs_blas']:.2f}x the BLAS time (median {r['vs_blas_median']:.2f}x)"
                + (" (fixed order)" if r["backend"] != "numpy-blas" else "")
            )
        if "vs_fused" in r:
            notes.append(f"{r['vs_fused']:.2f}x the fused yardstick (median {r['vs_fused_median']:.2f}x)")
        if "vs_one_thread" in r:
            notes.append(f"median {r['vs_one_thread']:.2f}x the 1-thread step")
        if "note" in r:
            notes.append(r["note"])
        ms = f"{1e3 * r['seconds']:9.2f}"
        print(f"{r['op']:<40} {r['backend']:<11} {ms} {gbs} {speed} {share}  {', '.join(notes)}")


def check_args(args: argparse.Namespace, prog: str) -> list[str]:
    """The backend names; exit with status 2 and one line on any bad argument."""
    if not MIN_LOG2N <= args.n <= MAX_LOG2N:
        usage_error(prog, f"--n {args.n}: must be in {MIN_LOG2N} .. {MAX_LOG2N} (segment length 2^LOG2N)")
    need, have = BASE_BYTES + BYTES_PER_ELEMENT * (1 << args.n), memory_available()
    if have is not None and need > have:
        usage_error(
            prog,
            f"--n {args.n}: needs about {need / 2**30:.1f} GiB of memory; {have / 2**30:.1f} GiB available",
        )
    if args.ordered and args.step:
        usage_error(prog, "--ordered and --step: choose one (each runs only its own rows)")
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = [name for name in names if name not in registry.backend_names()]
    if not names or unknown:
        usage_error(
            prog,
            f"--backends {args.backends!r}: "
            + ("unknown " + ", ".join(map(repr, unknown)) if unknown else "empty")
            + f"; choose from {', '.join(registry.backend_names())}",
        )
    if args.json is not None:
        problem = output_file_problem(args.json)
        if problem:
            usage_error(prog, f"--json {args.json!r}: {problem}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m vgc_ref.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 60 s on 2 cores)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the machine as JSON")
    parser.add_argument(
        "--n", type=int, default=24, metavar="LOG2N", help="segment length 2^LOG2N, 10 .. 27 (24)"
    )
    parser.add_argument(
        "--backends", default=",".join(registry.backend_names()), help="comma-separated backend names"
    )
    parser.add_argument(
        "--small-segments",
        action="store_true",
        help="only numba-cpu's serial and parallel paths at n = 2^8 .. 2^20 (numba_cpu.SERIAL_MAX)",
    )
    parser.add_argument(
        "--ordered",
        action="store_true",
        help="only the ordered-products rows (dense_grad_var in the fixed order against BLAS)",
    )
    parser.add_argument(
        "--step",
        action="store_true",
        help="only numba-cpu's vgc_step and vgc_step_scratch against the one-pass fused yardstick",
    )
    args = parser.parse_args(argv)
    names = check_args(args, parser.prog)
    if args.small_segments:
        info = machine()
        rows = small_segments(15 if args.quick else 51)
        print_small_segments(rows, info)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"small_segments": rows, "machine": info}, f, indent=2)
        return 0
    n = 1 << args.n
    repeats = 3 if args.quick else 7
    start = time.perf_counter()
    backends = _loaded(names)
    if "numpy" not in backends:
        backends = {"numpy": registry.get_backend("numpy"), **backends}
    info = machine()
    rows = run(n, repeats, backends, args.quick, args.ordered, args.step)
    _finish(rows)
    info["wall_seconds"] = round(time.perf_counter() - start, 1)
    print_table(rows, info, n)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": n, "quick": args.quick, "machine": info, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
