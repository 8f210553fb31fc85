"""Command line of the conformance kit.

Usage::

    python -m vgc_ref.conformance [--impl MODULE | --backend NAME] [--max-examples N]
                                  [--report PATH] [--derandomize] [--no-shrink] [-k EXPR]
                                  [--list] [--replay DIR] [-- PYTEST_ARGS...]

``--impl`` takes a dotted module name, a path to a .py file, or ``backend:NAME``;
``--backend NAME`` is short for ``--impl backend:NAME``. Without either, $VGC_IMPL or
the reference ``vgc_ref`` is tested. Exit status: 0 when every property passed, 1 when
one failed, 2 when the implementation cannot be loaded, an argument is bad (checked
before the suite runs: ``--report`` must be a writable file path), or pytest and
Hypothesis, the kit's own dependencies (``pip install 'vgc_ref[test]'``), are missing.

``--replay DIR`` replays a training run's dump instead (:mod:`vgc_ref.conformance.replay`;
docs/conformance.md, "Replaying a training run"): the dump is checked whole before the
implementation is loaded, ``--report`` writes the replay report, and the suite's own
options are refused with it.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from vgc_ref._cli import ArgumentParser, output_file_problem, usage_error
from vgc_ref.conformance import PROPERTIES, run
from vgc_ref.conformance.adapter import DEFAULT_IMPL, ENV_IMPL

#: The kit runs on these; they come with the extra ``vgc_ref[test]``.
REQUIRES = ("pytest", "hypothesis")
MISSING = [name for name in REQUIRES if importlib.util.find_spec(name) is None]
if not MISSING:
    from vgc_ref.conformance.conftest import DEFAULT_MAX_EXAMPLES
else:
    DEFAULT_MAX_EXAMPLES = 50  # conftest.DEFAULT_MAX_EXAMPLES; it cannot be imported without pytest


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m vgc_ref.conformance",
        description="Run the VGC conformance properties against an implementation.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--impl", help=f"module, .py file or backend:NAME (default ${ENV_IMPL} or {DEFAULT_IMPL})"
    )
    which.add_argument("--backend", help="a backend registered in vgc_ref.backends (e.g. numba-cpu)")
    parser.add_argument(
        "--max-examples",
        type=int,
        default=None,
        help=f"Hypothesis examples per property (default {DEFAULT_MAX_EXAMPLES})",
    )
    parser.add_argument("--report", metavar="PATH", help="write a JSON report of every property's outcome")
    parser.add_argument("--derandomize", action="store_true", help="fixed seeds: the same examples every run")
    parser.add_argument("--no-shrink", action="store_true", help="report failing examples without shrinking")
    parser.add_argument("-k", dest="select", metavar="EXPR", help="run only the properties matching EXPR")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per property")
    parser.add_argument("--list", action="store_true", help="list the properties and exit")
    parser.add_argument(
        "--replay",
        metavar="DIR",
        help="replay mpi_demo --dump-inputs DIR (replay.py; with --report, a replay report)",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    if args.list:
        if args.replay is not None:
            parser.error("--list and --replay: give one of them")
        for name, (module, what) in PROPERTIES.items():
            print(f"{module}.py::{name}\n    {what}")
        return 0
    if args.max_examples is not None and args.max_examples < 1:
        parser.error(f"--max-examples {args.max_examples}: must be >= 1")
    if args.report is not None:
        problem = output_file_problem(args.report)
        if problem:
            parser.error(f"--report {args.report!r}: {problem}")
    impl = args.impl or (f"backend:{args.backend}" if args.backend else None)
    impl = impl or os.environ.get(ENV_IMPL) or DEFAULT_IMPL
    if args.replay is not None:
        return _replay(parser, args, impl)
    if MISSING:
        usage_error(
            parser.prog,
            f"needs {' and '.join(MISSING)}, which the kit runs on: pip install 'vgc_ref[test]' "
            "(from a checkout: pip install '.[test]')",
        )
    return run(
        impl,
        max_examples=DEFAULT_MAX_EXAMPLES if args.max_examples is None else args.max_examples,
        report=args.report,
        derandomize=args.derandomize,
        shrink=not args.no_shrink,
        select=args.select,
        pytest_args=args.pytest_args,
        verbose=args.verbose,
    )


def _replay(parser: ArgumentParser, args, impl: str) -> int:
    """``--replay DIR``: the options of the property suite do not apply and are refused."""
    if args.replay == "":
        parser.error("--replay '': give the directory that --dump-inputs wrote")
    kit_only = {
        "--max-examples": args.max_examples is not None,
        "--derandomize": args.derandomize,
        "--no-shrink": args.no_shrink,
        "-k": args.select is not None,
        "arguments after --": bool(args.pytest_args),
    }
    for option, given in kit_only.items():
        if given:
            parser.error(f"{option}: an option of the property suite, not of --replay")
    from vgc_ref.conformance import replay

    return replay.main(args.replay, impl, args.report)


if __name__ == "__main__":
    sys.exit(main())
