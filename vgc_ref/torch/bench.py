"""Benchmark: a DDP training step with the VGC hook against plain allreduce and PowerSGD.

Usage::

    python -m vgc_ref.torch.bench [--sizes 1M,10M] [--steps N] [--repeats R] [--warmup W]
                                  [--batch B] [--backends a,b] [--json PATH] [--quick]

One gloo process group of 2 ranks on this machine, one thread each
(``torch.set_num_threads(1)``, ``NUMBA_NUM_THREADS=1``). For every model size, an MLP of
three square ``nn.Linear`` layers of width w and a 10-way classifier (w chosen so that the
parameter count is near the size asked for) is trained with momentum SGD under each
method, every method on its own copy of the same initial model:

* ``allreduce``: DDP with no communication hook (its own allreduce);
* ``powersgd``: PyTorch's ``powerSGD_hook`` (matrix_approximation_rank 4,
  start_powerSGD_iter 2, so it compresses from the third step on, before the timed steps);
* ``vgc/numba-cpu`` (when numba imports) and ``vgc/numpy``, or the backends of
  ``--backends``: ``vgc_ref.torch.register(ddp, method="vgc", alpha=2, backend=...)``.

Steps:

1. build every method's DDP model (``bucket_cap_mb`` large enough for one bucket holding the
   whole model, for every method: with several buckets PowerSGD issues its later
   collectives from future callbacks, and those of two buckets can reach gloo in a
   different order on the two ranks and hang);
2. warm up each method for W steps (PowerSGD starts compressing; VGC's r and v fill and its
   sent fraction settles);
3. R repeats; in each, every method in turn (the order rotated from repeat to repeat) runs
   N timed steps (zero_grad, forward, loss, backward with the hook, optimizer step) after a
   barrier. A repeat's figure is the slower rank's mean time per step;
4. rank 0 reports, per size and method, the min and median over the repeats, the ratio of
   each median to allreduce's median in the same run, the compression of the timed steps
   (VGC: from ``stats()``; PowerSGD: from its own element counters), and rank 0's median
   forward / backward / optimizer times per step.

The VGC hook exposes no timers. Its parts are timed from outside instead, by wrapping on
the hook's state object (never in vgc_ref/torch/hook.py) the methods ``_compress_aside``
(steps 1-4 of docs/torch.md) and ``_finish`` (step 8: wait for the aggregation, agree,
commit) and the hook call ``communicate`` as a whole (the rest of the call, "exchange", is
the length all_gather, which also waits for the other rank); where those private names are
missing the parts are left out. Only the vgc rows have parts: PowerSGD's work runs mostly in
future callbacks, which this does not reach. Timings are wall-clock on a shared machine; nothing is
asserted about them (tests/test_torch_bench.py checks only the output's shape).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import socket
import statistics
import sys
import tempfile
import time

from vgc_ref._cli import ArgumentParser, output_file_problem, usage_error

#: Width of the MLP's input and hidden layers is chosen for the size; it has 10 outputs.
CLASSES = 10
#: Hidden ``nn.Linear(w, w)`` layers (the input layer included).
LAYERS = 3
#: PowerSGD's settings (torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook).
POWERSGD_RANK, POWERSGD_START = 4, 2
#: VGC's settings.
VGC_ALPHA = 2.0
#: Distinct batches per rank, cycled through (made once, outside the timed steps).
BATCHES = 4
#: A gloo collective that waits longer than this raises instead of hanging (seconds).
GLOO_TIMEOUT = 600
#: Ranks of the process group.
WORLD = 2


def parse_size(text: str) -> int:
    """``"1M"`` -> 1_000_000, ``"250K"`` -> 250_000, ``"5000"`` -> 5000 (parameters)."""
    text = text.strip().upper()
    scale = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    value = float(number)  # ValueError for anything else
    if not math.isfinite(value) or value * scale < 1:
        raise ValueError(text)
    return round(value * scale)


def width_for(size: int) -> int:
    """The width w whose MLP has about ``size`` parameters: 3 (w^2 + w) + 10 w + 10."""
    a, b, c = LAYERS, LAYERS + CLASSES, CLASSES - size
    return max(2, round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))


def param_count(w: int) -> int:
    return LAYERS * (w * w + w) + CLASSES * w + CLASSES


def methods_available(backends: list[str] | None = None) -> list[str]:
    """The methods of a run: allreduce, powersgd, then vgc on each backend asked for
    (default: numba-cpu when numba imports, and numpy)."""
    if backends is None:
        backends = ["numpy"]
        try:
            import numba  # noqa: F401

            backends.insert(0, "numba-cpu")
        except ImportError:
            pass
    return ["allreduce", "powersgd", *(f"vgc/{b}" for b in backends)]


def machine() -> dict:
    """CPU model and flags, cores, load average, versions: what the figures depend on."""
    cpu, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu in ("", platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    import numpy
    import torch

    wanted = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "hypervisor")
    info = {
        "cpu": cpu,
        "cpu_flags": [f for f in wanted if f in flags],
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_config_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average": list(os.getloadavg()),
    }
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        info["numba"] = None
    return info


# -- one rank ---------------------------------------------------------------------------


def make_mlp(w: int, seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers = []
    for _ in range(LAYERS):
        layers += [nn.Linear(w, w), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(w, CLASSES))


def make_batches(w: int, batch: int, rank: int, seed: int = 0) -> list:
    """Fixed-seed inputs x ~ N(0, 1) per rank, labelled by a fixed random linear teacher."""
    import torch

    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(w, CLASSES, generator=g)
    g.manual_seed(1000 * (seed + 1) + rank)
    out = []
    for _ in range(BATCHES):
        x = torch.randn(batch, w, generator=g)
        out.append((x, (x @ teacher).argmax(dim=1)))
    return out


class _Timer:
    """Seconds spent inside a wrapped callable, summed (reset by the caller)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


class _Run:
    """One method's DDP model, optimizer, hook state and timers on this rank."""

    def __init__(self, method: str, w: int, model_bytes: int) -> None:
        import torch
        from torch import nn

        self.method = method
        self.model = make_mlp(w)
        # One bucket for the whole model, for every method (module docstring, step 1).
        cap_mb = model_bytes / 2**20 + 1
        self.ddp = nn.parallel.DistributedDataParallel(self.model, bucket_cap_mb=cap_mb)
        self.opt = torch.optim.SGD(self.ddp.parameters(), lr=0.01, momentum=0.9)
        self.state = None
        self.timers: dict[str, _Timer] = {}
        if method == "powersgd":
            from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd

            self.state = psgd.PowerSGDState(
                process_group=None,
                matrix_approximation_rank=POWERSGD_RANK,
                start_powerSGD_iter=POWERSGD_START,
                random_seed=0,
            )
            self.ddp.register_comm_hook(self.state, psgd.powerSGD_hook)
        elif method.startswith("vgc/"):
            import vgc_ref.torch as vt

            backend = method.split("/", 1)[1]
            self.state = vt.register(self.ddp, method="vgc", alpha=VGC_ALPHA, backend=backend)
            # Parts of the hook, timed from outside on this state object only.
            for part, name in (
                ("hook", "communicate"),
                ("compress", "_compress_aside"),
                ("finish", "_finish"),
            ):
                fn = getattr(self.state, name, None)
                if callable(fn):
                    self.timers[part] = _Timer()
                    setattr(self.state, name, self.timers[part].wrap(fn))
        self.phases = {"forward": [], "backward": [], "optimizer": []}
        self.parts = {part: [] for part in self.timers}

    def counters(self) -> tuple[float, float, float, float]:
        """So far: (size before compression, after, elements sent, elements); zeros for allreduce.

        PowerSGD counts float32 elements (its own counters), VGC bytes (``stats()``).
        """
        if self.method == "powersgd":
            before = self.state.total_numel_before_compression
            return (before, self.state.total_numel_after_compression, 0.0, before)
        if self.state is not None:
            stats = self.state.stats()
            return (stats["dense_bytes"], stats["message_bytes"], stats["sent"], stats["elements"])
        return (0.0, 0.0, 0.0, 0.0)

    def step(self, x, y, record: bool) -> None:
        import torch

        for t in self.timers.values():
            t.seconds = 0.0
        t0 = time.perf_counter()
        self.opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(self.ddp(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        self.opt.step()
        t3 = time.perf_counter()
        if record:
            self.phases["forward"].append(t1 - t0)
            self.phases["backward"].append(t2 - t1)
            self.phases["optimizer"].append(t3 - t2)
            for part, t in self.timers.items():
                self.parts[part].append(t.seconds)


def _say(rank: int, text: str) -> None:
    if rank == 0:
        print(f"# {text}", file=sys.stderr, flush=True)


def _median_ms(values: list[float]) -> float | None:
    return 1e3 * statistics.median(values) if values else None


def _parts(parts: dict[str, list[float]]) -> dict | None:
    """Medians of the hook's parts per step, and "exchange": the hook calls' time outside
    steps 1-4 and 8 (the length all_gather, which also waits for the other rank, and
    issuing the payload all_gather)."""
    if not parts:
        return None
    out = {k: _median_ms(v) for k, v in parts.items()}
    if {"hook", "compress", "finish"} <= set(parts):
        rest = [h - c - f for h, c, f in zip(parts["hook"], parts["compress"], parts["finish"])]
        out["exchange"] = _median_ms(rest)
    return out


def bench_size(rank: int, size: int, args, methods: list[str]) -> list[dict]:
    """Steps 1-4 for one model size on this rank; rank 0's rows (other ranks: [])."""
    import torch
    import torch.distributed as dist

    w = width_for(size)
    n_params = param_count(w)
    batches = make_batches(w, args.batch, rank)
    runs = {m: _Run(m, w, 4 * n_params) for m in methods}
    _say(rank, f"size {size:,}: MLP width {w}, {n_params:,} parameters, batch {args.batch} per rank")
    for m, run in runs.items():
        t0 = time.perf_counter()
        for i in range(args.warmup):
            x, y = batches[i % BATCHES]
            run.step(x, y, record=False)
        _say(rank, f"  warm-up {m}: {args.warmup} steps in {time.perf_counter() - t0:.1f} s")
    start = {m: run.counters() for m, run in runs.items()}
    blocks: dict[str, list[float]] = {m: [] for m in methods}
    for rep in range(args.repeats):
        order = methods[rep % len(methods) :] + methods[: rep % len(methods)]
        for m in order:
            run = runs[m]
            dist.barrier()
            t0 = time.perf_counter()
            for i in range(args.steps):
                x, y = batches[(args.warmup + i) % BATCHES]
                run.step(x, y, record=True)
            mine = torch.tensor([(time.perf_counter() - t0) / args.steps], dtype=torch.float64)
            dist.all_reduce(mine, op=dist.ReduceOp.MAX)  # the slower rank's mean step
            blocks[m].append(float(mine))
        line = ", ".join(f"{m} {1e3 * blocks[m][-1]:.1f}" for m in methods)
        _say(rank, f"  repeat {rep + 1}/{args.repeats} (ms/step): {line}")
    if rank != 0:
        return []
    rows = []
    base = statistics.median(blocks["allreduce"]) if "allreduce" in blocks else None
    for m in methods:
        run = runs[m]
        dense, sent_size, sent, elements = (a - b for a, b in zip(run.counters(), start[m]))
        median = statistics.median(blocks[m])
        row = {
            "size": size,
            "params": n_params,
            "width": w,
            "method": m,
            "ms_per_step_min": 1e3 * min(blocks[m]),
            "ms_per_step_median": 1e3 * median,
            "ms_per_step_repeats": [1e3 * b for b in blocks[m]],
            "ratio_to_allreduce_median": median / base if base else None,
            "ratio_to_allreduce_min": min(blocks[m]) / min(blocks["allreduce"]) if base else None,
            "phases_ms_median_rank0": {k: _median_ms(v) for k, v in run.phases.items()},
            "hook_parts_ms_median_rank0": _parts(run.parts),
            "compression_ratio": dense / sent_size if sent_size else None,
            "sent_fraction": None,
        }
        if m == "powersgd":
            row["compression_ratio_counts"] = "elements (float32), PowerSGDState counters, timed steps"
        elif m.startswith("vgc/"):
            row["compression_ratio_counts"] = "bytes, stats() dense_bytes / message_bytes, timed steps"
            row["sent_fraction"] = sent / elements if elements else None  # timed steps
            row["stats"] = run.state.stats()  # every step, warm-up included
        rows.append(row)
    return rows


def worker(rank: int, port: int, args, methods: list[str], out_path: str) -> None:
    """One rank: the process group, every size's runs, rank 0 writes its rows to ``out_path``."""
    import torch
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    try:
        import numba

        numba.set_num_threads(1)
    except ImportError:
        pass
    dist.init_process_group(
        "gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=GLOO_TIMEOUT)
    )
    try:
        rows = []
        for size in args.sizes:
            rows += bench_size(rank, size, args, methods)
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(rows, f)
    finally:
        dist.destroy_process_group()


# -- the driver -------------------------------------------------------------------------


def _fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_table(result: dict) -> None:
    info = result["machine"]
    print(
        f"# vgc_ref.torch.bench: {WORLD} gloo ranks x 1 thread, batch {result['batch']} per rank, "
        f"{result['steps']} timed steps x {result['repeats']} repeats after {result['warmup']} warm-up steps"
    )
    print(f"# cpu: {info['cpu']}, {info['cores']} cores, flags {' '.join(info['cpu_flags'])}")
    print(f"# load average before: {info['load_average']}, after: {result['load_average_after']}")
    head = (
        f"{'params':>11} {'method':<14} {'min ms':>8} {'median ms':>9} {'x allreduce':>11} "
        f"{'fwd/bwd/opt ms':>17} {'ratio':>7} {'sent':>7}  hook ms: call = compress + exchange + finish"
    )
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        ph = r["phases_ms_median_rank0"]
        phases = "/".join(_fmt(ph[k], ".0f") for k in ("forward", "backward", "optimizer"))
        parts = r["hook_parts_ms_median_rank0"]
        hook = ""
        if parts:
            hook = f"{_fmt(parts.get('hook'), '.1f')} = " + " + ".join(
                _fmt(parts.get(k), ".1f") for k in ("compress", "exchange", "finish")
            )
        ratio = _fmt(r["compression_ratio"], ".1f")
        ratio = ratio + "x" if ratio != "-" else ratio
        sent = _fmt(r["sent_fraction"], ".2%")
        print(
            f"{r['params']:>11,} {r['method']:<14} "
            f"{r['ms_per_step_min']:8.1f} {r['ms_per_step_median']:9.1f} "
            f"{_fmt(r['ratio_to_allreduce_median'], '11.2f')} {phases:>17} {ratio:>7} {sent:>7}  {hook}"
        )
    if not any(r["hook_parts_ms_median_rank0"] for r in result["rows"]):
        print("# the VGC hook's parts: not timed (the hook exposes no timers and its methods were not found)")
    else:
        print(
            "# hook ms (rank 0, medians per step): the VGC hook exposes no timers; timed from outside\n"
            "# on its state object: its calls (call), steps 1-4 (compress), step 8 with the wait for\n"
            "# steps 6-7 (finish), the rest (exchange: the length all_gather, which also waits for the\n"
            "# other rank, and issuing the payload all_gather)"
        )
    vgc = [r for r in result["rows"] if r["method"].startswith("vgc/")]
    psgd = {r["size"]: r for r in result["rows"] if r["method"] == "powersgd"}
    for r in vgc:
        if r["size"] in psgd:
            p = psgd[r["size"]]
            paired = repeat_ratios(r, p)
            print(
                f"# {r['params']:,} params: {r['method']} / powersgd median = "
                f"{r['ms_per_step_median'] / p['ms_per_step_median']:.2f}, "
                f"min = {r['ms_per_step_min'] / p['ms_per_step_min']:.2f}, "
                f"per repeat {min(paired):.2f}-{max(paired):.2f}"
            )


def repeat_ratios(row: dict, other: dict) -> list[float]:
    """row's mean step over other's, repeat by repeat: within a repeat the methods run one
    after the other, so each ratio compares steps the machine's load moved least between.
    Their spread is how far one run's ratio can be trusted."""
    return [a / b for a, b in zip(row["ms_per_step_repeats"], other["ms_per_step_repeats"], strict=True)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m vgc_ref.torch.bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="1M,10M", help="model sizes in parameters, comma-separated (1M,10M)"
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method and repeat (10)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats, the methods alternating (5)")
    parser.add_argument(
        "--warmup", type=int, default=10, help=f"warm-up steps per method (10; >= {POWERSGD_START + 1})"
    )
    parser.add_argument("--batch", type=int, default=64, help="samples per rank and step (64)")
    parser.add_argument(
        "--backends",
        help="vgc_ref backends of the vgc rows, comma-separated (numba-cpu if numba imports, numpy)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the machine as JSON")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny model, 2 steps, 2 repeats (for the test)"
    )
    return parser


def check_args(args: argparse.Namespace, prog: str) -> None:
    """Exit with status 2 and one line on any bad argument; fill in --quick's settings."""
    try:
        args.sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        usage_error(prog, f"--sizes {args.sizes!r}: give parameter counts like 1M,10M or 250K")
    if not args.sizes:
        usage_error(prog, "--sizes is empty; give parameter counts like 1M,10M")
    if args.quick:
        args.sizes, args.steps, args.repeats, args.warmup, args.batch = [2000], 2, 2, POWERSGD_START + 1, 8
    for name in ("steps", "repeats", "batch"):
        if getattr(args, name) < 1:
            usage_error(prog, f"--{name} {getattr(args, name)}: must be >= 1")
    if args.warmup <= POWERSGD_START:
        usage_error(
            prog,
            f"--warmup {args.warmup}: must be > {POWERSGD_START} "
            "so that PowerSGD compresses in the timed steps",
        )
    if args.backends is not None:
        from vgc_ref.backends import backend_names, get_backend

        names = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = [b for b in names if b not in backend_names()]
        if not names or unknown:
            usage_error(
                prog,
                f"--backends {args.backends!r}: "
                + ("unknown " + ", ".join(map(repr, unknown)) if unknown else "empty")
                + f"; choose from {', '.join(backend_names())}",
            )
        for name in names:
            try:
                get_backend(name)
            except (ImportError, RuntimeError) as err:
                usage_error(prog, f"--backends: {name} cannot run here ({err})")
        args.backends = names
    if args.json is not None:
        problem = output_file_problem(args.json)
        if problem:
            usage_error(prog, f"--json {args.json!r}: {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args, parser.prog)
    try:
        import torch
        import torch.multiprocessing as mp
    except ImportError as err:
        usage_error(parser.prog, f"needs torch ({err}); pip install -e '.[torch]' (docs/torch.md)")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        usage_error(parser.prog, "needs torch.distributed with the gloo backend")
    methods = methods_available(args.backends)
    # One thread per rank: for the spawned processes (NumPy's BLAS, Numba read these at start).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    info = machine()
    start = time.perf_counter()
    print(f"# methods: {', '.join(methods)}; sizes: {args.sizes}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="vgc-torch-bench-") as tmp:
        out = os.path.join(tmp, "rows.json")
        mp.spawn(worker, args=(free_port(), args, methods, out), nprocs=WORLD)
        with open(out) as f:
            rows = json.load(f)
    result = {
        "command": "python -m vgc_ref.torch.bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "sizes": args.sizes,
        "steps": args.steps,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "batch": args.batch,
        "world": WORLD,
        "threads_per_rank": 1,
        "bucket": "one DDP bucket holding the whole model (bucket_cap_mb = model MiB + 1), every method",
        "powersgd": {"matrix_approximation_rank": POWERSGD_RANK, "start_powerSGD_iter": POWERSGD_START},
        "vgc": {"method": "vgc", "alpha": VGC_ALPHA},
        "methods": methods,
        "machine": info,
        "load_average_after": list(os.getloadavg()),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
    }
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
