"""``python -m mpi_demo sweep``: the command line of the study (docs/results.md).

Trains by default. ``--reuse`` takes runs from the cache whose key (configuration and
code hash) matches; every trained run is appended to the cache either way.
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mpi_demo.data import MNIST1D
from mpi_demo.study import cache, plan, protocol, report, runner, schema
from vgc_ref._cli import (
    ArgumentParser,
    input_file_problem,
    output_dir_problem,
    output_file_problem,
    same_path,
    usage_error,
)

FULL_OUT = "docs/results"
FULL_MARKDOWN = "docs/results.md"
QUICK_OUT = "sweep-quick"
DEFAULT_CACHE = ".sweep-cache/runs.jsonl"
PROG = "python -m mpi_demo sweep"
#: The files the sweep writes into --out.
OUTPUTS = ("results.csv", "results.json", report.FIGURE)


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


def _new_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written as a file whose directory may still be missing."""
    parent = path.absolute().parent
    if parent.exists():
        return output_file_problem(str(path))
    return output_dir_problem(str(parent))


def _markdown_problem(path: str) -> str | None:
    """An output file problem, or an existing page the sweep cannot update: not UTF-8 text, or
    with one of the block's markers without the other."""
    problem = output_file_problem(path)
    if problem or not os.path.exists(path):
        return problem
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return f"cannot be read as UTF-8 text ({err})"
    begin, end = text.find(report.BEGIN), text.find(report.END)
    if (begin < 0) != (end < 0) or end < begin:
        return f"has {report.BEGIN} and {report.END} out of order or one without the other"
    return None


def _refuse_empty(args: argparse.Namespace) -> None:
    for option in ("out", "markdown", "cache", "render", "studies"):
        if getattr(args, option) == "":
            usage_error(PROG, f"--{option} is empty ''; give a value or leave the option out")


def _check_paths(args: argparse.Namespace, out: Path, markdown: str | None, cache_path: Path | None) -> None:
    """Every path the run will write (or --render read), checked before any run starts: each
    output proven writable by writing a probe file, and no two options naming one file."""
    if args.render:
        problem = input_file_problem(args.render)
        if problem is None and not os.path.isfile(args.render):
            problem = "is not a regular file"
        if problem:
            usage_error(PROG, f"--render {args.render}: {problem}")
    problem = output_dir_problem(str(out))
    if problem:
        usage_error(PROG, f"--out {out}: {problem}")
    if markdown is not None:
        problem = _markdown_problem(markdown)
        if problem:
            usage_error(PROG, f"--markdown {markdown}: {problem}")
    if cache_path is not None:
        problem = _new_file_problem(cache_path)
        if problem:
            usage_error(PROG, f"--cache {cache_path}: {problem}")
    written = {f"--out {out} ({name})": str(out / name) for name in OUTPUTS}
    named = {
        **({f"--markdown {markdown}": markdown} if markdown is not None else {}),
        **({f"--cache {cache_path}": str(cache_path)} if cache_path is not None else {}),
        **({f"--render {args.render}": args.render} if args.render else {}),
    }
    every = list(named.items()) + list(written.items())
    for i, (a, pa) in enumerate(every):
        for b, pb in every[i + 1 :]:
            if a.startswith("--render") and b.endswith("(results.json)"):
                continue  # --render rebuilds its own results.json in place: that is its point
            if same_path(pa, pb):
                usage_error(PROG, f"{a} and {b} name the same file; give each its own")


def _load_cache(cache_path: Path) -> dict:
    """The cache's rows, every line checked before any run (``--reuse``)."""
    try:
        return cache.load(cache_path, schema.check_run)
    except cache.CacheError as err:
        usage_error(PROG, f"--cache {cache_path}: {err}; fix or remove that line, or run without --reuse")


def run_cli(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    _refuse_empty(args)
    markdown = args.markdown if args.markdown is not None else (None if args.quick else FULL_MARKDOWN)
    if args.render:
        for option, given in (("--reuse", args.reuse), ("--studies", args.studies), ("--cache", args.cache)):
            if given:
                usage_error(PROG, f"{option} applies to training, not to --render (which trains nothing)")
        out = Path(args.out) if args.out else Path(args.render).parent
        _check_paths(args, out, markdown, None)
        _need_matplotlib()
        return render(Path(args.render), args, out, markdown)
    studies = plan.QUICK if args.quick else plan.FULL
    if args.studies is not None:
        wanted = args.studies.split(",")
        names = ", ".join(s.name for s in studies)
        unknown = [w for w in wanted if w not in {s.name for s in studies}]
        if unknown:
            usage_error(PROG, f"--studies {unknown[0]!r}: must be among {names}")
        if len(set(wanted)) != len(wanted):
            usage_error(PROG, f"--studies {args.studies!r}: a study is named twice")
        studies = tuple(s for s in studies if s.name in wanted)
    if args.jobs < 1:
        usage_error(PROG, f"--jobs {args.jobs}: must be >= 1")
    out = Path(args.out or (QUICK_OUT if args.quick else FULL_OUT))
    cache_path = Path(args.cache or (out / "cache.jsonl" if args.quick else DEFAULT_CACHE))
    _check_paths(args, out, markdown, cache_path)
    known = _load_cache(cache_path) if args.reuse else {}
    _need_matplotlib()
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
    rows = runner.run_many(planned, code, cache_path, args.reuse, args.jobs, say, counter, known)
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
    written = [out / name for name in OUTPUTS]
    written += [markdown] if markdown else []
    say("wrote " + ", ".join(str(w) for w in written))
    say(f"sweep: {elapsed / 60:.1f} min")
    return 0


def _need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401  (the figure; checked before hours of training)
    except ImportError:
        usage_error(PROG, "needs matplotlib for its figure: pip install -e '.[plot]' (make venv installs it)")


def prepare_outputs(markdown: str | None, meta, summary) -> tuple[str | None, bytes]:
    """The Markdown block and the figure, made in memory before any output file is written."""
    block = report.markdown_block(summary, meta) if markdown else None
    figure = io.BytesIO()
    report.plot(summary, figure)
    return block, figure.getvalue()


def write_outputs(out: Path, markdown: str | None, meta, summary, rows, prepared=None) -> None:
    block, figure = prepared if prepared is not None else prepare_outputs(markdown, meta, summary)
    out.mkdir(parents=True, exist_ok=True)
    report.write_csv(summary, out / "results.csv", meta)
    report.write_json({**meta, "summary": summary, "runs": rows}, out / "results.json")
    (out / report.FIGURE).write_bytes(figure)
    if markdown:
        report.update_markdown(Path(markdown), block)


def render(path: Path, args: argparse.Namespace, out: Path | None = None, markdown: str | None = None) -> int:
    """--render: the outputs of a recorded sweep, from its runs, with this version's statistics
    and report (the runs' numbers, commit and code hash stay those recorded).

    The file is checked whole (:func:`mpi_demo.study.schema.check_results`) and every output
    made in memory before anything is written; a file that cannot be used is refused in one
    line naming the entry.
    """
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        usage_error(PROG, f"--render {path}: not a readable JSON file ({err})")
    try:
        studies = schema.check_results(doc, plan.QUICK if args.quick else plan.FULL)
    except schema.SchemaError as err:
        usage_error(PROG, f"--render {path}: {err}")
    if out is None:
        out = Path(args.out) if args.out else path.parent
    if markdown is None:  # as run_cli chooses it
        markdown = args.markdown if args.markdown is not None else (None if args.quick else FULL_MARKDOWN)
    meta = {k: v for k, v in doc.items() if k not in ("summary", "runs")}
    meta["rendered_at"] = report.provenance()["commit"]
    try:  # the schema holds what these read; this is the net under it, before any write
        summary = protocol.summarize(studies, doc["runs"])
        prepared = prepare_outputs(markdown, meta, summary)
    except Exception as err:
        usage_error(PROG, f"--render {path}: the runs cannot be summarized ({type(err).__name__}: {err})")
    write_outputs(out, markdown, meta, summary, doc["runs"], prepared)
    print(f"rendered {len(doc['runs'])} recorded runs into {out}" + (f" and {markdown}" if markdown else ""))
    return 0


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv), argv)
