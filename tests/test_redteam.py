"""The red team's wrong implementations (tests/wrong_impls/redteam/, docs/conformance.md
"The red team"): ports written from docs/ alone, one plausible bug each.

Each is checked three ways: its witness shows that it really differs from the red team's
correct port (so a rejection is earned); the kit rejects it through the property
:data:`wrong_impls.redteam.EXPECTED` names, run on its own (derandomized) so that the
whole set costs a few seconds per module; and the golden vectors reject it through the
case :data:`wrong_impls.redteam.VECTORS` names (``vectors run`` then ``vectors check``),
unless its bug needs a Python object to show (:data:`wrong_impls.redteam.PYTHON_ONLY`,
each listed in docs/conformance.md). ``python tools/routes.py`` runs every module through
every vector and prints the count.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from wrong_impls.redteam import EXPECTED, PYTHON_ONLY, VECTORS

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


@pytest.fixture(scope="module")
def vectors_dir(tmp_path_factory):
    from vgc_ref import vectors

    root = tmp_path_factory.mktemp("redteam-vectors")
    vectors.export(root)
    return root


def _vectors_route(root: Path, module: str, cases: list[str]) -> tuple[int, str]:
    import contextlib
    import io

    from vgc_ref import vectors

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        vectors.run_impl(root, module, cases)
        code = vectors.check(root, cases)
    return code, buf.getvalue()


def test_vectors_and_python_only_lists_agree_with_the_docs():
    assert set(VECTORS) == set(EXPECTED)
    assert {name for name, case in VECTORS.items() if case is None} == set(PYTHON_ONLY)
    text = (TESTS.parent / "docs" / "conformance.md").read_text()
    section = text.split("### What only the Python kit checks")[1].split("\n## ")[0]
    for name, kind in PYTHON_ONLY.items():
        assert f"`{name}`" in section, f"{name} ({kind}) is not listed in docs/conformance.md"


def test_correct_port_passes_every_vector_that_rejects_a_module(vectors_dir):
    cases = sorted({case for case in VECTORS.values() if case})
    code, output = _vectors_route(vectors_dir, "wrong_impls.redteam._port", cases)
    assert code == 0, output[-3000:]


@pytest.mark.parametrize("name", sorted(n for n, case in VECTORS.items() if case))
def test_vectors_reject_redteam_impl(vectors_dir, name):
    code, output = _vectors_route(vectors_dir, f"wrong_impls.redteam.{name}", [VECTORS[name]])
    assert code == 1, f"the vector {VECTORS[name]} did not reject wrong_impls.redteam.{name}:\n{output}"
