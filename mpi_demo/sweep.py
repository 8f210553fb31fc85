"""Compression ratio against test accuracy: the demo over a grid of methods, seeds and data sets.

    python -m mpi_demo sweep                  # the full grid -> docs/results/, docs/results.md
    python -m mpi_demo sweep --quick          # a small grid in well under a minute -> sweep-quick/
    python -m mpi_demo sweep --mpi            # every run under mpiexec -n 4 instead of simulated

Every configuration is trained by :func:`mpi_demo.train.run_training` with 4 ranks. By
default the ranks are simulated in one process (:class:`mpi_demo.comm.SimulatedComm`);
the demo guarantees that a simulated run's trace is bit-identical to ``mpiexec -n 4``'s,
so accuracies, byte counts and ratios are those of the MPI job. Only the communicate time
differs: a simulated allgather is free, so its "communicate" phase is the decoding and
summing of the four messages alone.

Outputs (``--out DIR``):

* ``results.csv`` -- one row per configuration: test accuracy over the seeds (mean,
  sample standard deviation, min, max), the compression ratio (sum of dense bytes over
  sum of message bytes over every step, rank and seed, headers and CRC included:
  semantics section 10), the fraction of elements sent, message bytes per rank and step,
  and the mean time of one worker-step by phase;
* ``results.json`` -- the same rows, every single run, the grid, the command, the machine
  and the package versions;
* ``accuracy_vs_ratio.png`` -- test accuracy against compression ratio, one panel per
  data set (needs matplotlib: ``pip install -e '.[plot]'``; skipped with a message
  without it).

With ``--markdown PATH`` (the full sweep's default: docs/results.md) the block between
``<!-- sweep:begin -->`` and ``<!-- sweep:end -->`` in that file is replaced by the new
table and verdicts; the prose around it is left alone.

"Within one point of the baseline": a configuration whose mean test accuracy over the
seeds is at least the uncompressed baseline's mean minus 0.01 (one percentage point).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PHASES = ("compute", "variance", "compress", "communicate")
RANKS = 4
TOLERANCE = 0.01  # one percentage point of test accuracy
BEGIN, END = "<!-- sweep:begin -->", "<!-- sweep:end -->"

#: Strom's threshold tau per data set, chosen from a pilot (docs/results.md, "How tau was
#: chosen"): tau is in units of the gradient itself, so its useful range depends on the
#: gradients' magnitude; these values span ratios from a few to a few hundred.
STROM_TAUS = {"synthetic": (0.03, 0.1, 0.3, 1.0), "digits": (0.03, 0.1, 0.3, 1.0)}
#: hybrid: VGC's criterion (alpha 2, zeta 0.999) and Strom's threshold.
HYBRID_TAUS = {"synthetic": (0.03, 0.1), "digits": (0.03, 0.1)}
VGC_ALPHAS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
TOPK_FRACTIONS = (0.001, 0.003, 0.01, 0.03, 0.1)
SEEDS = (0, 1, 2)
DATASETS = ("synthetic", "digits")

FULL_OUT = "docs/results"
FULL_MARKDOWN = "docs/results.md"
QUICK_OUT = "sweep-quick"


@dataclasses.dataclass(frozen=True)
class Spec:
    """One configuration of the grid (without its seed)."""

    dataset: str
    method: str
    alpha: float = 2.0
    zeta: float = 0.999
    tau: float = 0.0
    fraction: float = 0.0  # topk only

    @property
    def label(self) -> str:
        if self.method == "vgc":
            return f"vgc a={self.alpha:g}"
        if self.method == "strom":
            return f"strom tau={self.tau:g}"
        if self.method == "hybrid":
            return f"hybrid a={self.alpha:g} tau={self.tau:g}"
        if self.method == "topk":
            return f"topk {self.fraction:g}"
        return "none"

    def config(self, seed: int, overrides: dict[str, Any] | None = None):
        from mpi_demo.config import TrainConfig

        kw: dict[str, Any] = dict(
            dataset=self.dataset,
            method=self.method,
            alpha=self.alpha,
            zeta=self.zeta,
            tau=self.tau,
            seed=seed,
            ranks=RANKS,
            progress=False,
        )
        if self.method == "topk":
            kw["fraction"] = self.fraction
        kw.update(overrides or {})
        return TrainConfig(**kw)


def grid(quick: bool = False, datasets: Sequence[str] = DATASETS) -> list[Spec]:
    """The configurations of the full grid, or of the quick one."""
    specs: list[Spec] = []
    for ds in datasets:
        if quick:
            specs += [
                Spec(ds, "none"),
                Spec(ds, "vgc", alpha=2.0),
                Spec(ds, "strom", tau=STROM_TAUS[ds][1]),
                Spec(ds, "hybrid", alpha=2.0, tau=HYBRID_TAUS[ds][0]),
                Spec(ds, "topk", fraction=0.01),
            ]
            continue
        specs.append(Spec(ds, "none"))
        specs += [Spec(ds, "vgc", alpha=a) for a in VGC_ALPHAS]
        specs += [Spec(ds, "strom", tau=t) for t in STROM_TAUS[ds]]
        specs += [Spec(ds, "hybrid", alpha=2.0, tau=t) for t in HYBRID_TAUS[ds]]
        specs += [Spec(ds, "topk", fraction=f) for f in TOPK_FRACTIONS]
    return specs


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------


def _row(spec: Spec, seed: int, r) -> dict[str, Any]:
    """One run's row from its TrainResult."""
    row: dict[str, Any] = {
        "dataset": spec.dataset,
        "method": spec.method,
        "label": spec.label,
        "alpha": spec.alpha if spec.method in ("vgc", "hybrid") else None,
        "zeta": spec.zeta if spec.method in ("vgc", "hybrid") else None,
        "tau": spec.tau if spec.method in ("strom", "hybrid") else None,
        "fraction": spec.fraction if spec.method == "topk" else None,
        "seed": seed,
        "ranks": r.ranks,
        "steps": r.steps,
        "n_params": r.dense_bytes // 4,
        "test_accuracy": r.test_accuracy,
        "train_accuracy": r.train_accuracy,
        "compression_ratio": r.compression_ratio,
        "sent_fraction": r.sent_fraction,
        "bytes_per_step": r.bytes_per_step,
        "dense_bytes": r.dense_bytes,
        "wall_seconds": r.wall_seconds,
    }
    for p in PHASES:
        row[f"{p}_s"] = r.time_per_step[p]
    row["step_s"] = sum(r.time_per_step[p] for p in PHASES)
    return row


def run_simulated(spec: Spec, seed: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one configuration with RANKS simulated workers in this process."""
    from mpi_demo.train import run_training

    return _row(spec, seed, run_training(spec.config(seed, overrides)))


def run_mpi(spec: Spec, seed: int, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one configuration under ``mpiexec -n RANKS``; rank 0 writes the row as JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        job = {"spec": dataclasses.asdict(spec), "seed": seed, "overrides": overrides or {}, "out": str(out)}
        cmd = [
            "mpiexec",
            "-n",
            str(RANKS),
            sys.executable,
            "-m",
            "mpi4py",
            "-m",
            "mpi_demo.sweep",
            "_mpi-worker",
            json.dumps(job),
        ]
        from mpi_demo.comm import mpi_env
        from mpi_demo.costcheck import mpiexec

        cmd[0] = mpiexec()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=mpi_env(), timeout=900)
        return json.loads(out.read_text())


def _mpi_worker(job_text: str) -> int:
    """One rank of ``run_mpi``'s job."""
    from mpi_demo.comm import MPIComm
    from mpi_demo.train import run_training

    job = json.loads(job_text)
    spec = Spec(**job["spec"])
    comm = MPIComm()
    r = run_training(spec.config(job["seed"], {**job["overrides"], "ranks": None}), comm)
    if comm.is_root:
        Path(job["out"]).write_text(json.dumps(_row(spec, job["seed"], r)))
    return 0


def _cache_key(spec: Spec, seed: int, overrides: dict[str, Any] | None, runner: Callable) -> str:
    comm = "mpiexec" if runner is run_mpi else "simulated" if runner is run_simulated else runner.__name__
    from mpi_demo import trace

    # The trace version names the demo's arithmetic: runs recorded under another are redone.
    arithmetic = f"trace v{trace.VERSION}"
    return json.dumps([dataclasses.asdict(spec), seed, overrides or {}, comm, arithmetic], sort_keys=True)


def _load_cache(path: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interruption
            done[item["key"]] = item["row"]
    return done


def run_grid(
    specs: Sequence[Spec],
    seeds: Sequence[int],
    runner: Callable[..., dict[str, Any]] = run_simulated,
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = print,
    cache: Path | None = None,
) -> list[dict[str, Any]]:
    """Every (spec, seed), one after the other (timings are per phase, so they stay comparable).

    With ``cache``, every finished run's row is appended to that JSON-lines file, and a run
    already there (same spec, seed, overrides and communicator) is not run again: an
    interrupted sweep continues where it stopped.
    """
    rows = []
    total = len(specs) * len(seeds)
    t0 = time.perf_counter()
    done = _load_cache(cache) if cache is not None else {}
    for spec in specs:
        for seed in seeds:
            key = _cache_key(spec, seed, overrides, runner)
            if key in done:
                row = done[key]
            else:
                row = runner(spec, seed, overrides)
                if cache is not None:
                    with open(cache, "a") as f:
                        f.write(json.dumps({"key": key, "row": row}) + "\n")
            rows.append(row)
            if log is not None:
                log(
                    f"[{len(rows):>3}/{total}] {spec.dataset:<9} {spec.label:<24} seed {seed}  "
                    f"test {100 * row['test_accuracy']:5.1f}%  ratio {row['compression_ratio']:7.1f}x  "
                    f"sent {100 * row['sent_fraction']:6.2f}%  step {1e3 * row['step_s']:.2f} ms  "
                    f"({time.perf_counter() - t0:.0f} s)"
                )
    return rows


# --------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------

SUMMARY_COLUMNS = (
    "dataset",
    "method",
    "label",
    "alpha",
    "zeta",
    "tau",
    "fraction",
    "seeds",
    "test_acc_mean",
    "test_acc_std",
    "test_acc_min",
    "test_acc_max",
    "compression_ratio",
    "ratio_min",
    "ratio_max",
    "sent_fraction",
    "bytes_per_step",
    "compute_ms",
    "variance_ms",
    "compress_ms",
    "communicate_ms",
    "step_ms",
    "variance_share",
)


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, label), in first-seen order, over its seeds.

    The compression ratio is that of the totals over every step, rank and seed
    (semantics section 10); the fraction sent likewise; times are means over the seeds.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["label"]), []).append(row)
    out = []
    for group in groups.values():
        first = group[0]
        accs = [g["test_accuracy"] for g in group]
        mean = sum(accs) / len(accs)
        std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
        dense = sum(g["dense_bytes"] * g["ranks"] * g["steps"] for g in group)
        sent_bytes = sum(g["bytes_per_step"] * g["ranks"] * g["steps"] for g in group)
        elements = sum(g["n_params"] * g["ranks"] * g["steps"] for g in group)
        sent = sum(g["sent_fraction"] * g["n_params"] * g["ranks"] * g["steps"] for g in group)
        ms = {p: 1e3 * sum(g[f"{p}_s"] for g in group) / len(group) for p in PHASES}
        step = sum(ms.values())
        out.append(
            {
                "dataset": first["dataset"],
                "method": first["method"],
                "label": first["label"],
                "alpha": first["alpha"],
                "zeta": first["zeta"],
                "tau": first["tau"],
                "fraction": first["fraction"],
                "seeds": len(group),
                "test_acc_mean": mean,
                "test_acc_std": std,
                "test_acc_min": min(accs),
                "test_acc_max": max(accs),
                "compression_ratio": dense / sent_bytes,
                "ratio_min": min(g["compression_ratio"] for g in group),
                "ratio_max": max(g["compression_ratio"] for g in group),
                "sent_fraction": sent / elements,
                "bytes_per_step": sent_bytes / sum(g["ranks"] * g["steps"] for g in group),
                **{f"{p}_ms": ms[p] for p in PHASES},
                "step_ms": step,
                "variance_share": ms["variance"] / step if step > 0 else float("nan"),
            }
        )
    return out


def baseline_accuracy(summary: Sequence[dict[str, Any]], dataset: str) -> float | None:
    """Mean test accuracy of the uncompressed run ("none") on ``dataset``."""
    for s in summary:
        if s["dataset"] == dataset and s["method"] == "none":
            return s["test_acc_mean"]
    return None


def best_within(
    summary: Sequence[dict[str, Any]], dataset: str, method: str, tolerance: float = TOLERANCE
) -> dict[str, Any] | None:
    """The configuration of ``method`` with the highest ratio whose mean test accuracy is at
    least the baseline's minus ``tolerance``; None when there is none (or no baseline)."""
    base = baseline_accuracy(summary, dataset)
    if base is None:
        return None
    ok = [
        s
        for s in summary
        if s["dataset"] == dataset
        and s["method"] == method
        and s["test_acc_mean"] >= base - tolerance - 1e-12
    ]
    return max(ok, key=lambda s: s["compression_ratio"]) if ok else None


def verdicts(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per data set and compressing method: the best ratio within one point of the baseline."""
    out = []
    for ds in dict.fromkeys(s["dataset"] for s in summary):
        base = baseline_accuracy(summary, ds)
        for method in ("vgc", "strom", "hybrid", "topk"):
            if not any(s["dataset"] == ds and s["method"] == method for s in summary):
                continue
            best = best_within(summary, ds, method)
            out.append(
                {
                    "dataset": ds,
                    "method": method,
                    "baseline_acc": base,
                    "best_label": best["label"] if best else None,
                    "best_ratio": best["compression_ratio"] if best else None,
                    "best_acc": best["test_acc_mean"] if best else None,
                    "best_sent_fraction": best["sent_fraction"] if best else None,
                }
            )
    return out


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def write_csv(summary: Sequence[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        w.writeheader()
        for s in summary:
            w.writerow({k: ("" if s[k] is None else s[k]) for k in SUMMARY_COLUMNS})


def machine_info() -> dict[str, Any]:
    import numpy as np

    import vgc_ref

    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    versions["vgc_ref"] = getattr(vgc_ref, "__version__", None)
    for mod in ("numba", "sklearn", "matplotlib", "mpi4py"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "versions": versions}


def write_json(
    rows: Sequence[dict[str, Any]],
    summary: Sequence[dict[str, Any]],
    path: Path,
    meta: dict[str, Any],
) -> None:
    doc = {**meta, "machine": machine_info(), "summary": list(summary), "verdicts": verdicts(summary)}
    doc["runs"] = list(rows)
    path.write_text(json.dumps(doc, indent=2) + "\n")


class PlotUnavailableError(RuntimeError):
    """matplotlib, an optional dependency, is missing."""


def plot(summary: Sequence[dict[str, Any]], path: Path) -> None:
    """Test accuracy against compression ratio, one panel per data set.

    Error bars are the min..max over the seeds; the baseline is a horizontal line with a
    band of +-1 point. Raises PlotUnavailableError without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise PlotUnavailableError(
            f"matplotlib is not installed ({err}); skipping the plot (pip install -e '.[plot]')"
        ) from err

    datasets = list(dict.fromkeys(s["dataset"] for s in summary))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.2 * len(datasets), 4.6), squeeze=False)
    style = {
        "vgc": ("tab:red", "o"),
        "strom": ("tab:blue", "s"),
        "hybrid": ("tab:purple", "D"),
        "topk": ("tab:green", "^"),
    }
    for ax, ds in zip(axes[0], datasets):
        rows = [s for s in summary if s["dataset"] == ds]
        base = baseline_accuracy(rows, ds)
        if base is not None:
            ax.axhspan(100 * (base - TOLERANCE), 100 * (base + TOLERANCE), color="0.85", zorder=0)
            ax.axhline(100 * base, color="k", lw=1, label=f"none (dense) {100 * base:.1f}% +-1 pt")
        for method, (color, marker) in style.items():
            pts = sorted((s for s in rows if s["method"] == method), key=lambda s: s["compression_ratio"])
            if not pts:
                continue
            x = [s["compression_ratio"] for s in pts]
            y = [100 * s["test_acc_mean"] for s in pts]
            err = [
                [100 * (s["test_acc_mean"] - s["test_acc_min"]) for s in pts],
                [100 * (s["test_acc_max"] - s["test_acc_mean"]) for s in pts],
            ]
            ax.errorbar(x, y, yerr=err, color=color, marker=marker, capsize=3, lw=1.2, label=method)
            for s, xi, yi in zip(pts, x, y):
                tag = s["label"].split(" ", 1)[1] if " " in s["label"] else ""
                ax.annotate(tag, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
        ax.set_xscale("log")
        ax.set_xlabel("compression ratio (dense bytes / message bytes)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{ds}: {RANKS} ranks, mean over seeds (bars: min..max)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt_opt(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def markdown_block(summary: Sequence[dict[str, Any]], meta: dict[str, Any], png: str | None) -> str:
    """The generated part of docs/results.md: table, figure, verdicts, variance cost."""
    lines = [
        BEGIN,
        "",
        f"Generated by `{meta['command']}` on {meta['date']} "
        f"({meta['n_runs']} runs of {meta['ranks']} {meta['communicator']} ranks; their training loops took "
        f"{meta['train_s'] / 60:.1f} min in all; seeds {', '.join(map(str, meta['seeds']))}).",
        "",
    ]
    if png:
        lines += [f"![test accuracy against compression ratio]({png})", ""]
    for ds in dict.fromkeys(s["dataset"] for s in summary):
        base = baseline_accuracy(summary, ds)
        lines += [
            f"#### {ds}",
            "",
            "| configuration | test acc. mean | std | min..max | ratio | sent | bytes/step "
            "| compute | variance | compress | communicate | step (ms) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in summary:
            if s["dataset"] != ds:
                continue
            within = base is not None and s["test_acc_mean"] >= base - TOLERANCE - 1e-12
            mark = "" if s["method"] == "none" or within else " (below)"
            lines.append(
                f"| {s['label']}{mark} | {100 * s['test_acc_mean']:.1f}% | {100 * s['test_acc_std']:.1f} "
                f"| {100 * s['test_acc_min']:.1f}..{100 * s['test_acc_max']:.1f} "
                f"| {s['compression_ratio']:.1f}x | {100 * s['sent_fraction']:.2f}% "
                f"| {s['bytes_per_step']:.0f} | {s['compute_ms']:.2f} | {s['variance_ms']:.2f} "
                f"| {s['compress_ms']:.2f} | {s['communicate_ms']:.2f} | {s['step_ms']:.2f} |"
            )
        lines.append("")
    lines += [
        "#### Best compression ratio within one point of the baseline",
        "",
        "| data set | baseline (none) | vgc | strom | hybrid | topk |",
        "|---|---:|---|---|---|---|",
    ]
    by = {(v["dataset"], v["method"]): v for v in verdicts(summary)}
    for ds in dict.fromkeys(s["dataset"] for s in summary):
        cells = []
        for m in ("vgc", "strom", "hybrid", "topk"):
            v = by.get((ds, m))
            if v is None:
                cells.append("not run")
            elif v["best_ratio"] is None:
                cells.append("none within 1 pt")
            else:
                cells.append(
                    f"**{v['best_ratio']:.1f}x** ({v['best_label']}, {100 * v['best_acc']:.1f}%, "
                    f"{100 * v['best_sent_fraction']:.2f}% sent)"
                )
        base = baseline_accuracy(summary, ds)
        base_txt = _fmt_opt(None if base is None else 100 * base, ".1f")
        lines.append(f"| {ds} | {base_txt}% | {' | '.join(cells)} |")
    lines += [
        "",
        "#### Cost of the variance term s",
        "",
        "| data set | configuration | variance (ms) | step (ms) | variance / step | variance / compute |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in summary:
        if s["method"] in ("vgc", "hybrid"):
            lines.append(
                f"| {s['dataset']} | {s['label']} | {s['variance_ms']:.3f} | {s['step_ms']:.2f} "
                f"| {100 * s['variance_share']:.1f}% | {100 * s['variance_ms'] / s['compute_ms']:.1f}% |"
            )
    lines += ["", END]
    return "\n".join(lines)


def update_markdown(path: Path, block: str) -> None:
    """Replace the block between the markers in ``path`` (append it when there are none)."""
    text = path.read_text() if path.exists() else "# Results\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a small grid (1 seed, 3 epochs), under a minute")
    p.add_argument("--out", default=None, help=f"output folder (default {FULL_OUT}; --quick: {QUICK_OUT})")
    p.add_argument(
        "--markdown",
        default=None,
        help=f"update the generated block of this file (default {FULL_MARKDOWN}; --quick: none)",
    )
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated")
    p.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; --quick: 0)")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs (--quick: 3)")
    p.add_argument("--mpi", action="store_true", help=f"run every configuration under mpiexec -n {RANKS}")
    p.add_argument("--no-plot", action="store_true", help="do not draw the PNG")
    p.add_argument(
        "--methods", default="none,vgc,strom,hybrid,topk", help="comma-separated subset of the grid's methods"
    )
    p.add_argument(
        "--fresh",
        action="store_true",
        help="ignore the runs recorded in OUT/runs.jsonl by an earlier (or interrupted) sweep",
    )


def _check_args(args: argparse.Namespace) -> str | None:
    """The first bad argument of a sweep as one line, or None; checked before any run."""
    from vgc_ref._cli import output_file_problem

    datasets = [d for d in args.datasets.split(",") if d]
    unknown = [d for d in datasets if d not in DATASETS]
    if not datasets or unknown:
        return f"--datasets {args.datasets!r}: choose from {', '.join(DATASETS)}"
    from mpi_demo.config import METHODS

    methods = [m for m in args.methods.split(",") if m]
    if not methods or any(m not in METHODS for m in methods):
        return f"--methods {args.methods!r}: choose from {', '.join(METHODS)}"
    if args.seeds and not all(part.strip().isdigit() for part in args.seeds.split(",")):
        return f"--seeds {args.seeds!r}: must be comma-separated integers >= 0"
    if args.epochs is not None and args.epochs < 1:
        return f"--epochs {args.epochs}: must be >= 1"
    out = Path(args.out or (QUICK_OUT if args.quick else FULL_OUT))
    if out.exists() and not out.is_dir():
        return f"--out {str(out)!r}: exists and is not a directory"
    existing = next((p for p in [out, *out.parents] if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        return f"--out {str(out)!r}: {existing} is not writable"
    if args.markdown:
        problem = output_file_problem(args.markdown)
        if problem:
            return f"--markdown {args.markdown!r}: {problem}"
    return None


def run_cli(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    problem = _check_args(args)
    if problem:
        from vgc_ref._cli import say_error

        say_error("python -m mpi_demo sweep", problem)
        return 2
    datasets = tuple(d for d in args.datasets.split(",") if d)
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else ((0,) if args.quick else SEEDS)
    epochs = args.epochs if args.epochs is not None else (3 if args.quick else None)
    overrides = {"epochs": epochs} if epochs is not None else {}
    out = Path(args.out or (QUICK_OUT if args.quick else FULL_OUT))
    markdown = args.markdown if args.markdown is not None else (None if args.quick else FULL_MARKDOWN)
    if "digits" in datasets:
        import importlib.util

        if importlib.util.find_spec("sklearn") is None:
            print("mpi_demo sweep: error: --datasets digits needs scikit-learn", file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    methods = set(args.methods.split(","))
    specs = [s for s in grid(args.quick, datasets) if s.method in methods]
    cache = out / "runs.jsonl"
    if args.fresh and cache.exists():
        cache.unlink()
    command = "python -m mpi_demo sweep " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv) if a != "sweep"
    )
    command = command.rstrip()
    print(f"sweep: {len(specs)} configurations x {len(seeds)} seeds, {RANKS} ranks -> {out}", flush=True)
    t0 = time.perf_counter()
    rows = run_grid(
        specs,
        seeds,
        run_mpi if args.mpi else run_simulated,
        overrides,
        log=lambda s: print(s, flush=True),
        cache=cache,
    )
    elapsed = time.perf_counter() - t0
    summary = summarize(rows)
    meta = {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "n_runs": len(rows),
        "elapsed_s": elapsed,
        "train_s": sum(r["wall_seconds"] for r in rows),
        "seeds": list(seeds),
        "ranks": RANKS,
        "communicator": "mpiexec" if args.mpi else "simulated",
        "overrides": overrides,
        "grid": [dataclasses.asdict(s) for s in specs],
        "tolerance": TOLERANCE,
    }
    write_csv(summary, out / "results.csv")
    write_json(rows, summary, out / "results.json", meta)
    png = None
    if not args.no_plot:
        try:
            plot(summary, out / "accuracy_vs_ratio.png")
            png = out / "accuracy_vs_ratio.png"
        except PlotUnavailableError as err:
            print(f"sweep: {err}", file=sys.stderr)
    if markdown:
        md = Path(markdown)
        rel = os.path.relpath(png, md.parent) if png else None
        update_markdown(md, markdown_block(summary, meta, rel))
    for v in verdicts(summary):
        best = (
            f"{v['best_ratio']:.1f}x ({v['best_label']}, {100 * v['best_acc']:.1f}%)"
            if v["best_ratio"]
            else "none within 1 point"
        )
        print(f"{v['dataset']:<9} {v['method']:<7} baseline {100 * v['baseline_acc']:.1f}%  best: {best}")
    print(f"wrote {out / 'results.csv'}, {out / 'results.json'}" + (f", {png}" if png else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "_mpi-worker":
        return _mpi_worker(argv[1])
    from vgc_ref._cli import ArgumentParser

    parser = ArgumentParser(prog="python -m mpi_demo sweep", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv), argv)


if __name__ == "__main__":
    # One thread per process unless the environment says otherwise (as python -m mpi_demo
    # does). Not at import: changing NUMBA_NUM_THREADS in a process whose Numba threads
    # already run makes its next compilation fail.
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    sys.exit(main())
