"""The conformance kit, tested: it passes every registered backend, rejects every deliberately
wrong implementation in tests/wrong_impls/ with the property that names the bug, reports
missing operations and failures as documented, and its golden vectors round-trip.

Every kit run is a subprocess of ``python -m vgc_ref.conformance``, exactly as a user runs
it, with seeded (derandomized) Hypothesis so a failure here reproduces. All runs start
together, two at a time, when the first test needs one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from wrong_impls import EXPECTED, SLOW_EXPECTED

from vgc_ref.backends import REGISTRY, backend_names
from vgc_ref.conformance import PROPERTIES

TESTS = Path(__file__).resolve().parent
WRONG_DIR = TESTS / "wrong_impls"
#: Examples per property: the backends get the kit's default, the wrong implementations fewer
#: (their bugs are caught by the hand-picked edge cases, so the catch never depends on luck).
BACKEND_EXAMPLES = {"numba-cuda": 5}
WRONG_EXAMPLES = 20
WORKERS = max(1, min(2, os.cpu_count() or 1))


def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.pop("VGC_IMPL", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def run_kit(workdir: Path, impl: str, *args: str, env: dict | None = None, timeout: int = 600) -> dict:
    """Run the kit on ``impl``; return {"code", "output", "report"} (report None if not written)."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "vgc_ref.conformance",
        "--impl",
        impl,
        "--derandomize",
        "--report",
        str(report),
        *args,
    ]
    proc = subprocess.run(cmd, cwd=workdir, env=_env(env), capture_output=True, text=True, timeout=timeout)
    return {
        "code": proc.returncode,
        "output": proc.stdout + proc.stderr,
        "report": json.loads(report.read_text()) if report.exists() else None,
    }


class Runs:
    """Kit runs started in parallel on first use; ``get(key)`` waits for one."""

    def __init__(self, root: Path, jobs: dict[str, tuple[str, tuple, dict]]):
        self.root, self.jobs, self.futures = root, jobs, None
        self.pool = None

    def get(self, key: str) -> dict:
        if self.futures is None:
            self.pool = ThreadPoolExecutor(WORKERS)
            self.futures = {
                k: self.pool.submit(run_kit, self.root / k, impl, *args, env=env)
                for k, (impl, args, env) in self.jobs.items()
            }
        return self.futures[key].result()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def _backend_env(name: str) -> dict:
    if (
        name == "numba-cuda"
        and "NUMBA_ENABLE_CUDASIM" not in os.environ
        and shutil.which("nvidia-smi") is None
    ):
        return {"NUMBA_ENABLE_CUDASIM": "1"}  # no GPU here: the CUDA simulator
    return {}


@pytest.fixture(scope="module")
def kit_runs(tmp_path_factory):
    """Every kit run of this module, slowest first, so the pool stays busy."""
    jobs = {}
    for name in sorted(backend_names(), key=lambda n: n != "numba-cuda"):
        examples = BACKEND_EXAMPLES.get(name)
        args = ("--max-examples", str(examples)) if examples else ()
        env = _backend_env(name)
        simulated = {**os.environ, **env}.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
        if name == "numba-cuda" and simulated:
            # A step on 2^27 elements is beyond the simulator (one Python call per thread);
            # on a GPU the case runs like every other.
            args += ("-k", "not largest_segment")
        jobs[name] = (f"backend:{name}", args, env)
    # One wrong implementation with shrinking, for the report's minimal example.
    jobs["ge_instead_of_gt+shrink"] = (
        "wrong_impls.ge_instead_of_gt",
        ("--max-examples", str(WRONG_EXAMPLES)),
        {},
    )
    for name, expected in EXPECTED.items():
        args = ("--max-examples", str(WRONG_EXAMPLES), "--no-shrink")
        if expected.startswith("test_rule_case["):  # a port bug: its property alone, deterministic
            args += ("-k", "test_rule_case")
        jobs[name] = (f"wrong_impls.{name}", args, {})
    runs = Runs(tmp_path_factory.mktemp("kit"), jobs)
    yield runs
    runs.close()


def _failed_ids(report: dict) -> set[str]:
    return {r["id"] for r in report["results"] if r["outcome"] in ("failed", "error")}


@pytest.mark.slow
@pytest.mark.parametrize("name", backend_names())
def test_kit_passes_backend(kit_runs, name):
    """Every registered backend passes every property (exit status 0)."""
    run = kit_runs.get(name)
    if run["code"] == 2 and "cannot load implementation" in run["output"]:
        pytest.skip(
            f"backend {name} ({REGISTRY[name]}) cannot load here: {run['output'].strip().splitlines()[-1]}"
        )
    report = run["report"]
    assert report is not None, run["output"][-3000:]
    failed = sorted(_failed_ids(report))
    assert run["code"] == 0 and not failed, f"{name} fails {failed}:\n{run['output'][-4000:]}"
    assert report["passed"] is True and report["summary"]["skipped"] == 0
    assert {r["property"] for r in report["results"]} == set(PROPERTIES)


def test_every_wrong_impl_is_listed():
    """Each module in tests/wrong_impls/ (but the helpers) has an expected catching property."""
    modules = {
        p.stem for p in WRONG_DIR.glob("*.py") if not p.stem.startswith("_") and p.stem != "incomplete"
    }
    assert modules == set(EXPECTED) | set(SLOW_EXPECTED)
    for expected in EXPECTED.values():
        assert expected.split("[")[0] in PROPERTIES


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPECTED))
def test_kit_rejects_wrong_impl(kit_runs, name):
    """The kit fails on every wrong implementation, and the property naming its bug is among
    the failures."""
    run = kit_runs.get(name)
    assert run["code"] == 1, f"the kit did not reject wrong_impls.{name}:\n{run['output'][-3000:]}"
    failed = _failed_ids(run["report"])
    assert EXPECTED[name] in failed, (
        f"wrong_impls.{name}: {EXPECTED[name]} passed; failures: {sorted(failed)}"
    )


@pytest.mark.slow
def test_report_holds_the_falsifying_example(kit_runs):
    """--report: per property an outcome; a failed Hypothesis property carries its (shrunk)
    falsifying example, and an edge case its inputs in the message."""
    report = kit_runs.get("ge_instead_of_gt+shrink")["report"]
    assert report["report_version"] == 1 and report["impl"] == "wrong_impls.ge_instead_of_gt"
    assert report["passed"] is False and report["summary"]["failed"] >= 1
    assert set(report["summary"]) == {"passed", "failed", "error", "skipped"}
    for entry in report["results"]:
        assert {"id", "property", "module", "params", "outcome", "duration_s"} <= set(entry)
        assert entry["outcome"] in ("passed", "failed", "error", "skipped")
    by_id = {e["id"]: e for e in report["results"]}
    random = by_id["test_vgc_step_equals_reference"]
    assert random["outcome"] == "failed"
    assert "test_vgc_step_equals_reference(" in random["example"] and "inputs=" in random["example"]
    tie = by_id["test_vgc_step_equals_reference_on_edge_cases[tie_at_threshold]"]
    assert tie["outcome"] == "failed" and "case tie_at_threshold" in tie["message"]
    assert by_id["test_conservation"]["outcome"] == "passed"


def test_missing_operation_is_named(tmp_path):
    """A module without some operations: each property using one fails with "X is not defined
    in MODULE", and the kit exits 1."""
    run = run_kit(
        tmp_path, "wrong_impls.incomplete", "--max-examples", "3", "-k", "canonical or dense_grad_var"
    )
    assert run["code"] == 1
    assert "encode_message is not defined in wrong_impls.incomplete" in run["output"]
    messages = {e["property"]: e.get("message", "") for e in run["report"]["results"]}
    assert (
        "encode_message is not defined in wrong_impls.incomplete"
        in messages["test_encoding_is_canonical_both_ways"]
    )
    assert "dense_grad_var is not defined" in messages["test_dense_grad_var_matches_per_sample_gradients"]
    assert run["report"]["missing_operations"] == [
        "encode_message",
        "decode_message",
        "decode_accumulate",
        "dense_grad_var",
        "conv_grad_var",
    ]


def test_unloadable_impl_exits_2(tmp_path):
    run = run_kit(tmp_path, "no_such_module_for_vgc")
    assert run["code"] == 2 and "cannot load implementation" in run["output"]


def test_pytest_pyargs_entry_point(tmp_path):
    """``VGC_IMPL=... python -m pytest --pyargs vgc_ref.conformance`` runs the same suite."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--pyargs",
        "vgc_ref.conformance",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        "edge_cases or malformed",
    ]
    proc = subprocess.run(
        cmd,
        cwd=tmp_path,
        env=_env({"VGC_IMPL": "vgc_ref", "VGC_MAX_EXAMPLES": "5"}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def _vectors(*args, cwd):
    cmd = [sys.executable, "-m", "vgc_ref.vectors", *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_golden_vectors_round_trip(tmp_path):
    """export, then the reference writes out/ (run), then check passes; a tampered output file
    makes check fail, naming the case. (max_index is left to the dedicated check below: the
    full 2^27-element run takes half a minute.)"""
    root = tmp_path / "vectors"
    assert _vectors("export", str(root), cwd=tmp_path).returncode == 0
    names = [c["name"] for c in json.loads((root / "index.json").read_text())["cases"]]
    assert {
        "max_index",
        "k_15_and_16",
        "ties_at_threshold",
        "subnormals",
        "near_float32_max",
        "decode",
        "empty_segments",
        "nothing_sent",
        "everything_sent",
        "multi_segment_every_codec",
    } <= set(names)
    cases = [arg for n in names if n != "max_index" for arg in ("--case", n)]
    run = _vectors("run", str(root), "--impl", "vgc_ref", *cases, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    ok = _vectors("check", str(root), *cases, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout
    assert "all cases match" in ok.stdout

    target = root / "k_15_and_16" / "out" / "step0" / "seg0.words.u32"
    data = bytearray(target.read_bytes())
    data[0] ^= 1
    target.write_bytes(bytes(data))
    (root / "decode" / "out" / "crc_mismatch.json").write_text('{"ok": true, "packets": []}')
    bad = _vectors("check", str(root), *cases, cwd=tmp_path)
    assert bad.returncode == 1
    assert "FAIL  k_15_and_16: step0/seg0.words.u32: element 0" in bad.stdout
    assert "FAIL  decode: crc_mismatch.json" in bad.stdout
    assert "ok    ties_at_threshold" in bad.stdout

    missing = _vectors("check", str(root), "--case", "max_index", cwd=tmp_path)
    assert missing.returncode == 1 and "FAIL  max_index: out/ is missing" in missing.stdout


def test_golden_vectors_max_index_sparse(tmp_path):
    """The largest-index case stores only index/value pairs, and its packets send index 2^27 - 1."""
    import numpy as np

    root = tmp_path / "vectors"
    assert _vectors("export", str(root), cwd=tmp_path).returncode == 0
    case = root / "max_index"
    assert max(p.stat().st_size for p in case.rglob("*") if p.is_file()) < 4096
    words = np.fromfile(case / "expected" / "step0" / "seg0.words.u32", "<u4")
    assert (words >> 5).max() == (1 << 27) - 1
    assert json.loads((case / "case.json").read_text())["segments"][0]["n"] == 1 << 27


def _table(*args, timeout=900):
    cmd = [sys.executable, "-m", "vgc_ref.conformance.table", *args]
    return subprocess.run(cmd, cwd=TESTS, env=_env(), capture_output=True, text=True, timeout=timeout)


def test_fma_adapter_rejected_deterministically(tmp_path):
    """An adapter computing the criterion with a fused multiply-add (the bug nvcc introduces by
    default) fails the kit at --derandomize --max-examples 10, on the tie case built for it,
    and the failure names the inputs with their float32 bits and the first differing word."""
    run = run_kit(tmp_path, "wrong_impls.fma_in_criterion", "--max-examples", "10", "-k", "test_rule_case")
    assert run["code"] == 1, run["output"][-3000:]
    by_id = {e["id"]: e for e in run["report"]["results"]}
    entry = by_id["test_rule_case[vgc.fma_tie_alpha_2]"]
    assert entry["outcome"] == "failed"
    assert "vgc_step packet" in entry["message"] and "inputs: segment_id=3, r=[" in entry["message"]
    assert "(0x" in entry["message"] and "alpha=2.0 (float32 2.0 (0x40000000))" in entry["message"]
    assert "ExceptionGroup" not in run["output"]


def test_table_catches_each_wrong_impl_fast():
    """The deterministic layer alone (no Hypothesis) rejects every wrong implementation but the
    slow-only ones, each at the case EXPECTED names (when that case is a table case)."""
    from vgc_ref.conformance.table import BY_ID

    for name, expected in EXPECTED.items():
        case = expected[expected.find("[") + 1 : -1] if "[" in expected else None
        if case not in BY_ID:
            continue
        run = _table("--impl", f"wrong_impls.{name}", "--case", case, timeout=300)
        assert run.returncode == 1 and f"FAIL {case}" in run.stdout, f"{name}: {run.stdout[-2000:]}"


@pytest.mark.slow
def test_max_index_through_a_real_step():
    """n = 2^27 through a real step (about 8 GB of memory, half a minute): the reference
    passes, and an index field one bit short is caught."""
    ok = _table("--impl", "vgc_ref", "--slow", "-k", "slow.")
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    for name, case in SLOW_EXPECTED.items():
        bad = _table("--impl", f"wrong_impls.{name}", "--slow", "--case", case)
        assert bad.returncode == 1 and f"FAIL {case}" in bad.stdout, bad.stdout[-2000:]


DOCS = TESTS.parent / "docs"


def test_every_numbered_rule_has_a_case():
    """Each numbered step and decision of docs/algorithm.md, each check of docs/format.md and
    each row of the error table in docs/conformance.md is pinned by at least one case of the
    deterministic layer (or is named as outside the adapter protocol, with the reason); so
    is each row of its acceptance table ("What each argument accepts")."""
    from vgc_ref.conformance.table import CASES, NOT_IN_PROTOCOL, doc_rules

    rules = doc_rules(DOCS)
    assert {f"format:{i}" for i in range(1, 20)} <= set(rules)
    assert {f"decision:{i}" for i in range(1, 14)} <= set(rules)
    assert {f"algorithm:3.{i}" for i in range(6)} <= set(rules)
    assert sum(r.startswith(("accept:", "reject:")) for r in rules) >= 30  # the acceptance table
    tagged = {rule for case in CASES for rule in case.rules}
    missing = [r for r in rules if r not in tagged and r not in NOT_IN_PROTOCOL]
    assert not missing, f"rules without a case: {missing}"
    unknown = sorted(tagged - set(rules))
    assert not unknown, f"cases tagged with rules the docs do not number: {unknown}"


def test_coverage_table_is_current():
    """The coverage table in docs/conformance.md is what ``--coverage docs`` prints now."""
    from vgc_ref.conformance.table import coverage_table

    text = (DOCS / "conformance.md").read_text()
    committed = text.split("<!-- coverage:start -->\n")[1].split("<!-- coverage:end -->")[0]
    assert committed == coverage_table(DOCS), (
        "docs/conformance.md's coverage table is stale: regenerate it with "
        "python -m vgc_ref.conformance.table --coverage docs"
    )


class _StandInLibrary:
    """What ``ctypes.CDLL("libvgc.so")`` gives the documented adapter: vgc_step_f32 with the
    C signature, computing in place on r and v (with the reference, as a correct library would)."""

    class _Function:
        argtypes = None

        def __call__(self, r, v, g, s, n, alpha, zeta, tau, reset, words, count, E):
            import numpy as np

            import vgc_ref

            state = vgc_ref.SegmentState(0, r, v)
            params = vgc_ref.VGCParams(
                float(alpha), float(zeta), float(tau), "reset" if reset else "feedback"
            )
            packet = vgc_ref.vgc_step(state, g, s, params)
            words[: packet.count] = np.asarray(packet.words, np.uint32)
            count.value, E.value = packet.count, packet.param
            return 0

    def __init__(self):
        self.vgc_step_f32 = self._Function()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_documented_minimal_adapter_passes(tmp_path):
    """The minimal adapter of docs/conformance.md, run as written with a stand-in for the C
    library, passes every step case of the deterministic layer."""
    import ctypes

    text = (DOCS / "conformance.md").read_text()
    code = text.split("# mypkg/vgc_adapter.py\n")[1].split("```")[0]
    assert 'lib = ctypes.CDLL("libvgc.so")' in code
    namespace: dict = {}
    real = ctypes.CDLL
    ctypes.CDLL = lambda name: _StandInLibrary()
    try:
        exec(compile(code, "docs/conformance.md (minimal adapter)", "exec"), namespace)
    finally:
        ctypes.CDLL = real

    from vgc_ref.conformance.adapter import Impl
    from vgc_ref.conformance.table import CASES, run_case

    impl = Impl(
        "docs-adapter",
        **{op: namespace.get(op) for op in ("encode_message", "decode_message")},
        vgc_step=namespace["vgc_step"],
        strom_step=namespace.get("strom_step", lambda *a: None),
        decode_accumulate=namespace["decode_accumulate"],
        dense_grad_var=namespace["dense_grad_var"],
        conv_grad_var=namespace.get("conv_grad_var", lambda *a: None),
    )
    cases = [c for c in CASES if c.id.startswith(("vgc.", "invalid.vgc-", "pair.vgc-")) and not c.slow]
    failures = {c.id: run_case(impl, c) for c in cases}
    failures = {k: v for k, v in failures.items() if v is not None}
    assert len(cases) > 50 and not failures, failures
