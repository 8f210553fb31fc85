"""Both routes of the kit on the same wrong implementations: how many the golden vectors reject.

    python tools/routes.py                 # the red team's modules (tests/wrong_impls/redteam)
    python tools/routes.py --set own       # this project's own wrong modules (tests/wrong_impls)
    python tools/routes.py --json out.json # also write every module's verdict

Exports the golden vectors once, runs the correct port the modules derive from (the red
team's ``_port``, or the reference for the own set) through them to find the cases it
fails itself (those say nothing about a bug), then each wrong module:
``vectors run --impl MODULE`` and ``vectors check``, in process. A module is rejected when
it fails a case its correct port passes. Prints one line per module and the count; the
Python kit's count is tests/test_redteam.py's. About two minutes on one core.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from vgc_ref import vectors  # noqa: E402
from vgc_ref._cli import ArgumentParser  # noqa: E402


def failing_cases(root: Path, module: str, cases: list[str]) -> dict[str, str]:
    """{case: its FAIL line} for ``module`` run through the vectors in ``root``."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        vectors.run_impl(root, module, cases)
        vectors.check(root, cases)
    lines = [line for line in buf.getvalue().splitlines() if line.startswith("FAIL")]
    return {line.split()[1].rstrip(":"): line for line in lines}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python tools/routes.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write {module: first failing case or null} here")
    parser.add_argument("--set", choices=("redteam", "own"), default="redteam", help="which wrong modules")
    args = parser.parse_args(argv)
    if args.set == "redteam":
        from wrong_impls.redteam import EXPECTED

        package, correct = "wrong_impls.redteam", "wrong_impls.redteam._port"
    else:
        from wrong_impls import EXPECTED

        package, correct = "wrong_impls", "vgc_ref"

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with contextlib.redirect_stdout(io.StringIO()):
            names = vectors.export(root)
        cases = [n for n in names if n != "max_index"]  # 2 GiB of state; nothing here needs it
        base = failing_cases(root, correct, cases)
        print(f"the correct port fails {len(base)} case(s): {', '.join(sorted(base)) or '-'}")
        verdicts = {}
        for name in sorted(EXPECTED):
            failed = failing_cases(root, f"{package}.{name}", cases)
            new = {k: v for k, v in failed.items() if k not in base}
            verdicts[name] = min(new) if new else None
            first = next(iter(new.values()), "")[:160]
            print(f"{'rejected' if new else 'passes  '}  {name}  {first}", flush=True)
    rejected = sum(v is not None for v in verdicts.values())
    seconds = time.time() - started
    print(f"golden vectors reject {rejected} of {len(verdicts)} wrong implementations ({seconds:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(verdicts, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
