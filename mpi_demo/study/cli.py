"""``python -m mpi_demo sweep``: the command line of the study (docs/results.md).

Trains by default. ``--reuse`` takes runs from the cache whose key (configuration and
code hash) matches; every trained run is appended to the cache either way.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mpi_demo.data import MNIST1D
from mpi_demo.study import cache, plan, protocol, report, runner
from vgc_ref._cli import input_file_problem, output_file_problem, usage_error

FULL_OUT = "docs/results"
FULL_MARKDOWN = "docs/results.md"
QUICK_OUT = "sweep-quick"
DEFAULT_CACHE = ".sweep-cache/runs.jsonl"
PROG = "python -m mpi_demo sweep"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quick", action="store_true", help="a tiny study (few steps, small grids), about a minute"
    )
    p.add_argument("--out", default=None, help=f"output folder (default {FULL_OUT}; --quick: {QUICK_OUT})")
    p.add_argument(
        "--markdown",
        default=None,
        help=f"update the generated block of this file (default {FULL_MARKDOWN}; --quick: none)",
    )
    p.add_argument("--studies", default=None, help="comma-separated subset of the studies (default: all)")
    p.add_argument("--jobs", type=int, default=2, help="training processes at a time (default 2)")
    p.add_argument("--reuse", action="store_true", help="take runs with the same key from the cache")
    p.add_argument(
        "--render",
        default=None,
        metavar="RESULTS_JSON",
        help="train nothing: rebuild the summary, CSV and Markdown from the runs recorded in a results.json",
    )
    p.add_argument(
        "--cache", default=None, help=f"cache file (default {DEFAULT_CACHE}; --quick: OUT/cache.jsonl)"
    )


def _directory_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (made into) a writable directory, or None when it can."""
    if path.exists():
        if not path.is_dir():
            return "is not a directory"
        return None if os.access(path, os.W_OK | os.X_OK) else "is not writable"
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    return None if os.access(parent, os.W_OK | os.X_OK) else f"directory {parent} is not writable"


def _check_paths(args: argparse.Namespace, out: Path, markdown: str | None, cache_path: Path | None) -> None:
    """Every path the run will write (or --render read), checked before any run starts."""
    if args.render:
        problem = input_file_problem(args.render)
        if problem:
            usage_error(PROG, f"--render {args.render}: {problem}")
    problem = _directory_problem(out)
    if problem:
        usage_error(PROG, f"--out {out}: {problem}")
    if markdown is not None:
        problem = output_file_problem(markdown)
        if problem:
            usage_error(PROG, f"--markdown {markdown}: {problem}")
    if cache_path is not None:
        problem = _directory_problem(cache_path.parent) or (
            "is a directory; give a file path" if cache_path.is_dir() else None
        )
        if problem:
            usage_error(PROG, f"--cache {cache_path}: {problem}")


def run_cli(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    markdown = args.markdown if args.markdown is not None else (None if args.quick else FULL_MARKDOWN)
    if args.render:
        out = Path(args.out) if args.out else Path(args.render).parent
        _check_paths(args, out, markdown, None)
        return render(Path(args.render), args)
    studies = plan.QUICK if args.quick else plan.FULL
    if args.studies:
        wanted = args.studies.split(",")
        unknown = [w for w in wanted if w not in {s.name for s in studies}]
        if unknown:
            names = ", ".join(s.name for s in studies)
            usage_error(PROG, f"--studies {unknown[0]!r}: must be among {names}")
        studies = tuple(s for s in studies if s.name in wanted)
    if args.jobs < 1:
        usage_error(PROG, f"--jobs {args.jobs}: must be >= 1")
    out = Path(args.out or (QUICK_OUT if args.quick else FULL_OUT))
    cache_path = Path(args.cache or (out / "cache.jsonl" if args.quick else DEFAULT_CACHE))
    _check_paths(args, out, markdown, cache_path)
    try:
        import matplotlib  # noqa: F401  (the figure; checked before hours of training)
    except ImportError:
        usage_error(PROG, "needs matplotlib for its figure: pip install -e '.[plot]' (make venv installs it)")
    if any(s.dataset in MNIST1D for s in studies):
        from mpi_demo import mnist1d

        try:
            mnist1d.load()
        except mnist1d.Mnist1dError as err:
            usage_error(PROG, str(err))
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m mpi_demo sweep " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv) if a != "sweep"
    )
    command = command.rstrip()
    code = cache.code_hash()
    say = lambda s: print(s, flush=True)  # noqa: E731
    seeds = plan.QUICK_SEEDS if args.quick else plan.SEEDS
    planned = protocol.jobs(studies, seeds)
    counter = [0, len(planned)]
    say(
        f"sweep: {len(studies)} studies, {len(planned)} runs (every setting on seeds "
        f"{', '.join(map(str, seeds))}), {plan.RANKS} simulated ranks, {args.jobs} processes, "
        f"code {code[:12]} -> {out}"
    )
    provenance = report.provenance()  # at the start: the code that trains
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    rows = runner.run_many(planned, code, cache_path, args.reuse, args.jobs, say, counter)
    elapsed = time.perf_counter() - t0
    summary = protocol.summarize(studies, rows)
    meta = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "code_hash": code,
        "provenance": provenance,
        "elapsed_s": elapsed,
        "jobs": args.jobs,
        "load": [load0[0], os.getloadavg()[0]],
        "n_trained": sum(1 for r in rows if not r.get("cached")),
        "n_cached": sum(1 for r in rows if r.get("cached")),
        "studies": [plan.study_dict(s) for s in studies],
        "seeds": list(seeds),
        "tolerance": plan.TOLERANCE,
    }
    write_outputs(out, markdown, meta, summary, rows)
    for b in protocol.best(summary):
        s = b["best"]
        if s is None:
            say(f"{b['study']:<13} {b['method']:<16} no setting holds the baseline")
            continue
        say(
            f"{b['study']:<13} {b['method']:<16} holds up to {plan.PARAMETER[b['method']]}={s['value']:g}: "
            f"ratio {s['compression_ratio']:.1f}x, diff {100 * s['mean_diff']:+.1f}, lower bound "
            f"{100 * s['lower_bound']:+.1f}, worst seed {100 * s['min_diff']:+.1f}"
        )
    written = [out / "results.csv", out / "results.json", out / report.FIGURE]
    written += [markdown] if markdown else []
    say("wrote " + ", ".join(str(w) for w in written))
    say(f"sweep: {elapsed / 60:.1f} min")
    return 0


def write_outputs(out: Path, markdown: str | None, meta, summary, rows) -> None:
    report.write_csv(summary, out / "results.csv", meta)
    report.write_json({**meta, "summary": summary, "runs": rows}, out / "results.json")
    report.plot(summary, out / report.FIGURE)
    if markdown:
        report.update_markdown(Path(markdown), report.markdown_block(summary, meta))


def render(path: Path, args: argparse.Namespace) -> int:
    """--render: the outputs of a recorded sweep, from its runs, with this version's statistics
    and report (the runs' numbers, commit and code hash stay those recorded)."""
    import json

    doc = json.loads(path.read_text())
    names = [s["name"] for s in doc["studies"]]
    studies = tuple(s for s in (plan.QUICK if args.quick else plan.FULL) if s.name in names)
    summary = protocol.summarize(studies, doc["runs"])
    meta = {k: v for k, v in doc.items() if k not in ("summary", "runs")}
    meta["rendered_at"] = report.provenance()["commit"]
    out = Path(args.out) if args.out else path.parent
    markdown = args.markdown if args.markdown is not None else (None if args.quick else FULL_MARKDOWN)
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(out, markdown, meta, summary, doc["runs"])
    print(f"rendered {len(doc['runs'])} recorded runs into {out}" + (f" and {markdown}" if markdown else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpi_demo sweep", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv), argv)
