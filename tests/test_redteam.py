"""The red team's wrong implementations (tests/wrong_impls/redteam/, docs/conformance.md
"The red team"): ports written from docs/ alone, one plausible bug each.

Each is checked two ways: its witness shows that it really differs from the red team's
correct port (so a rejection is earned), and the kit rejects it through the property
:data:`wrong_impls.redteam.EXPECTED` names, run on its own (derandomized) so that the
whole set costs a few seconds per module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from wrong_impls.redteam import EXPECTED

TESTS = Path(__file__).resolve().parent
REDTEAM = TESTS / "wrong_impls" / "redteam"
WORKERS = max(1, min(2, os.cpu_count() or 1))


def test_every_module_is_listed_and_differs_on_its_witness():
    modules = {p.stem for p in REDTEAM.glob("*.py") if not p.stem.startswith("_")}
    assert modules == set(EXPECTED)
    done = subprocess.run(
        [sys.executable, str(REDTEAM / "_witness.py")], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].startswith(f"summary: {len(EXPECTED)} DIFFERS, 0 SAME")


def _kit(tmp: Path, name: str) -> tuple[int, set[str], str]:
    tmp.mkdir(parents=True, exist_ok=True)
    report = tmp / "report.json"
    prop = EXPECTED[name].split("[")[0]
    cmd = [sys.executable, "-m", "vgc_ref.conformance", "--impl", f"wrong_impls.redteam.{name}"]
    cmd += ["--derandomize", "--max-examples", "10", "--no-shrink", "-k", prop, "--report", str(report)]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(TESTS), os.environ.get("PYTHONPATH"))))
    )
    env.pop("VGC_IMPL", None)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp)
    failed = set()
    if report.exists():
        results = json.loads(report.read_text())["results"]
        failed = {r["id"] for r in results if r["outcome"] in ("failed", "error")}
    return done.returncode, failed, done.stdout[-2000:] + done.stderr[-1000:]


@pytest.fixture(scope="module")
def kit_verdicts(tmp_path_factory):
    root = tmp_path_factory.mktemp("redteam")
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {name: pool.submit(_kit, root / name, name) for name in EXPECTED}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_kit_rejects_redteam_impl(kit_verdicts, name):
    code, failed, output = kit_verdicts[name]
    assert code == 1, f"the kit did not reject wrong_impls.redteam.{name}:\n{output}"
    assert EXPECTED[name] in failed, f"{name}: {EXPECTED[name]} passed; failures: {sorted(failed)}"
