"""Mutation testing of the conformance kit (``make mutation``; docs/mutation.md).

The kit compares an implementation under test with the pristine reference ``vgc_ref``,
so mutating ``vgc_ref`` in place would mutate the reference too. Instead this script
writes a copy of the semantic modules as the package ``vgc_mut`` (imports rewired from
``vgc_ref`` to ``vgc_mut``; the copy's exception classes also derive from the
reference's, as a foreign adapter's must), plus an adapter ``vgc_mut/__init__.py``
that exposes the six operations of the protocol. cosmic-ray mutates the copy, one
mutant at a time, and runs the kit's fast deterministic layer against it::

    python -m vgc_ref.conformance.table --impl vgc_mut -x

A mutant the table does not kill is run once more against the Hypothesis layer
(``--derandomize``, few examples). Whatever survives both is a survivor; the
survivors that are equivalent (no input can tell them apart from the reference) are
listed, each with its reason, in docs/conformance.md ("Equivalent mutants").

Usage::

    python tools/mutation.py run [--modules criterion quantize ...] [--workers 2]
    python tools/mutation.py build DIR          # only write DIR/vgc_mut

``run`` shards the modules over ``--workers`` processes, each with its own copy and
cosmic-ray session, and writes docs/mutation.md (score, survivors, time).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "vgc_ref"
#: The modules that define the protocol's arithmetic and format, in the order they are reported.
MODULES = [
    "criterion",
    "quantize",
    "state",
    "params",
    "packet",
    "encoding",
    "aggregate",
    "variance",
    "portable",
    "errors",
]
WORKDIR = ROOT / ".mutation"
#: Code that no operation of the adapter protocol reaches: a mutant there is equivalent for
#: the kit by construction (docs/conformance.md, "Mutation testing"). module -> names.
OUTSIDE_PROTOCOL = {
    "criterion": ["topk_step", "dense_packet"],
    "params": ["TopKParams"],
    "state": ["segment_bounds", "split_segments", "SegmentState.zeros", "SegmentState.copy"],
    "packet": ["Packet.E", "Packet.__eq__", "Packet.__hash__", "Packet.__repr__"],
    "encoding": ["message_length", "validate_packet"],
    "aggregate": [],
    "variance": ["per_sample_dense_grad_var"],
    # dense_grad_var reaches matmul_tn and column_sums; the rest serve the demo's model.
    "portable": ["matmul", "matmul_nt", "row_sums", "exp32", "log32"],
}
PACKAGE = "vgc_mut"

ADAPTER = '''"""Adapter of the mutated copy: the seven operations of the conformance protocol.

Hyperparameters, states and packets that arrive as vgc_ref objects are rebuilt with the
copy's own classes (sharing the arrays), so the copy's params, state and packet code runs.
"""

import vgc_ref as _ref
from {package} import aggregate, criterion, encoding, packet, params, state, variance


def _state(s):
    return state.SegmentState(s.segment_id, s.r, s.v)


def vgc_step(s, g, v, p):
    if isinstance(p, _ref.VGCParams):
        p = params.VGCParams(p.alpha, p.zeta, p.tau, p.residual)
    return criterion.vgc_step(_state(s), g, v, p)


def strom_step(s, g, p):
    if isinstance(p, _ref.StromParams):
        p = params.StromParams(p.tau)
    return criterion.strom_step(_state(s), g, p)


def _packet(p):
    if isinstance(p, _ref.Packet):
        return packet.Packet(p.segment_id, p.n, int(p.codec), p.param, p.words)
    return p


def encode_message(packets):
    return encoding.encode_message([_packet(p) for p in packets])


decode_message = encoding.decode_message
decode_accumulate = aggregate.decode_accumulate
dense_grad_var = variance.dense_grad_var
conv_grad_var = variance.conv_grad_var
'''


def rewire(text: str, module: str, package: str = PACKAGE) -> str:
    """The module's source with its imports of vgc_ref pointed at the copy."""
    text = re.sub(r"\bfrom vgc_ref import\b", f"from {package} import", text)
    text = re.sub(r"\bfrom vgc_ref\.", f"from {package}.", text)
    if module == "errors":
        # Each class also derives from the reference's class of the same name, as an
        # adapter's errors must (the kit accepts the reference's class or a subclass).
        text = text.replace(
            "from __future__ import annotations\n",
            "from __future__ import annotations\n\nfrom vgc_ref import errors as _reference\n",
            1,
        )
        text = text.replace("class VGCError(ValueError):", "class VGCError(_reference.VGCError):")
        text = re.sub(r"^class (\w+)\((\w+)\):", r"class \1(\2, _reference.\1):", text, flags=re.M)
        text = text.replace(
            "class VGCError(_reference.VGCError, _reference.VGCError):",
            "class VGCError(_reference.VGCError):",
        )
        # The copy's constructors set every attribute; the reference's must not run after them.
        text += "\n\nVGCError.__init__ = lambda self, *args: ValueError.__init__(self, *args)\n"
    return text


def build(dest: Path, package: str = PACKAGE, edit: tuple[str, str, str] | None = None) -> Path:
    """Write dest/PACKAGE: the copy of every module in MODULES and the adapter.

    ``edit`` = (module, before, after) replaces one source line's text (exactly once) in
    the copy: a mutant written by hand, as the CI subset (tests/test_mutation_subset.py) does.
    """
    folder = dest / package
    folder.mkdir(parents=True, exist_ok=True)
    for module in MODULES:
        text = rewire((SOURCE / f"{module}.py").read_text(), module, package)
        if edit is not None and edit[0] == module:
            if text.count(edit[1]) != 1:
                raise ValueError(f"{module}.py: {edit[1]!r} occurs {text.count(edit[1])} times, not once")
            text = text.replace(edit[1], edit[2])
        (folder / f"{module}.py").write_text(text)
    (folder / "__init__.py").write_text(ADAPTER.replace("{package}", package))
    return folder


# --------------------------------------------------------------------------------------
# The test command cosmic-ray runs against each mutant
# --------------------------------------------------------------------------------------


def test_mutant(copy_root: Path, log: Path, hypothesis_examples: int) -> int:
    """Exit status 0 (survived) or 1 (killed) for the mutant now in copy_root/vgc_mut.

    The table runs first; a mutant it does not kill runs the Hypothesis layer too, and is
    logged (its diff against the pristine copy, and whether Hypothesis killed it) to ``log``.
    """
    # The kit and the reference come from the snapshot taken when the run started; the
    # table runs in this process (one interpreter start per mutant).
    kit = copy_root.parent / "kit"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(copy_root), str(kit)]), VGC_IMPL=PACKAGE)
    sys.path[:0] = [str(copy_root), str(kit)]
    os.chdir(kit)
    import warnings

    warnings.filterwarnings("ignore")
    try:
        from vgc_ref.conformance import table
        from vgc_ref.conformance.adapter import load_impl

        impl = load_impl(PACKAGE)
        for case in table.CASES:
            if not case.slow and table.run_case(impl, case) is not None:
                return 1
    except Exception:  # the mutant breaks the import of the copy: killed
        return 1
    diff = subprocess.run(
        ["diff", "-u", "-r", str(copy_root.parent / "pristine" / PACKAGE), str(copy_root / PACKAGE)],
        capture_output=True,
        text=True,
    ).stdout
    changed = re.findall(r"^\+\+\+ \S*/(\w+)\.py", diff, flags=re.M)
    before, after = _describe(None, diff)
    if changed and any(
        (e["module"], e["before"], e["after"]) == (changed[0], before, after)
        for e in _listed("### Killed by the slow case only")
    ):
        # Listed as visible only at n = 2^27: run the slow case (about a minute, 8 GB).
        slow = [sys.executable, "-m", "vgc_ref.conformance.table", "--impl", PACKAGE, "--slow", "-k", "slow."]
        if subprocess.run(slow, env=env, cwd=kit, capture_output=True, timeout=1800).returncode != 0:
            with log.open("a") as fh:
                fh.write(json.dumps({"diff": diff, "hypothesis_killed": False, "slow_killed": True}) + "\n")
            return 1
    if changed and any(
        (e["module"], e["before"], e["after"]) == (changed[0], before, after) for e in _equivalents()
    ):
        return 0  # listed as equivalent (with its reason): no input tells it apart, skip Hypothesis
    command = [
        sys.executable,
        "-m",
        "vgc_ref.conformance",
        "--impl",
        PACKAGE,
        "--derandomize",
        "--no-shrink",
        "--max-examples",
        str(hypothesis_examples),
        "--",
        "-x",
    ]
    proc = subprocess.run(command, env=env, cwd=kit, capture_output=True, text=True, timeout=600)
    killed = proc.returncode != 0
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]
    with log.open("a") as fh:
        fh.write(json.dumps({"diff": diff, "hypothesis_killed": killed, "failed": failed[:3]}) + "\n")
    return 1 if killed else 0


# --------------------------------------------------------------------------------------
# A full run
# --------------------------------------------------------------------------------------

CONFIG = """[cosmic-ray]
module-path = {paths}
timeout = 300.0
excluded-modules = []
test-command = "{python} {script} test {copy} {log} {examples}"

[cosmic-ray.distributor]
name = "local"
"""


def _shards(modules: list[str], workers: int) -> list[list[str]]:
    """Split the modules over the workers, balancing the number of mutants roughly by size."""
    sizes = {m: (SOURCE / f"{m}.py").stat().st_size for m in modules}
    shards: list[list[str]] = [[] for _ in range(workers)]
    load = [0] * workers
    for m in sorted(modules, key=lambda m: -sizes[m]):
        i = load.index(min(load))
        shards[i].append(m)
        load[i] += sizes[m]
    return [s for s in shards if s]


def run(modules: list[str], workers: int, examples: int, limit: int | None) -> dict:
    import shutil

    started = time.time()
    if WORKDIR.exists():
        shutil.rmtree(WORKDIR)
    build(WORKDIR / "pristine")
    shutil.copytree(SOURCE, WORKDIR / "kit" / "vgc_ref", ignore=shutil.ignore_patterns("__pycache__"))
    _check_pristine(WORKDIR / "pristine")
    sessions = []
    excluded: list[dict] = []
    for w, shard in enumerate(_shards(modules, workers)):
        copy = WORKDIR / f"w{w}"
        build(copy)
        log = WORKDIR / f"w{w}-table-survivors.jsonl"
        paths = json.dumps([str(copy / PACKAGE / f"{m}.py") for m in shard])
        config = WORKDIR / f"w{w}.toml"
        config.write_text(
            CONFIG.format(
                paths=paths,
                python=sys.executable,
                script=Path(__file__).resolve(),
                copy=copy,
                log=log,
                examples=examples,
            )
        )
        session = WORKDIR / f"w{w}.sqlite"
        subprocess.run(
            [sys.executable, "-m", "cosmic_ray.cli", "init", str(config), str(session)], check=True, cwd=ROOT
        )
        excluded += _exclude(session)
        if limit is not None:
            _limit_session(session, limit)
        sessions.append((shard, session, log))
    (WORKDIR / "excluded.json").write_text(json.dumps(excluded))
    _exec(len(sessions))
    seconds = time.time() - started
    (WORKDIR / "timing.json").write_text(
        json.dumps({"run_s": seconds, "workers": workers, "examples": examples})
    )
    return summarize()


def _check_pristine(root: Path) -> None:
    """The unmutated copy must pass every fast case, or every mutant would count as killed
    (an import error of the copy, say, kills them all)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root.parent / "kit")]))
    command = [sys.executable, "-m", "vgc_ref.conformance.table", "--impl", PACKAGE]
    proc = subprocess.run(command, env=env, cwd=root.parent / "kit", capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the unmutated copy fails the table; fix that first:\n{proc.stdout[-2000:]}")


def _exec(workers: int) -> None:
    """cosmic-ray exec on every worker's session at once: the mutants without a result yet."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cosmic_ray.cli",
                "exec",
                str(WORKDIR / f"w{w}.toml"),
                str(WORKDIR / f"w{w}.sqlite"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(WORKDIR / f"w{w}.log").open("a"),
        )
        for w in range(workers)
    ]
    for p in procs:
        p.wait()


def resume() -> dict:
    """After the table grew: take a new snapshot of the kit and run the survivors again.

    Cases are only ever added to the table, so a mutant it killed stays killed; only the
    survivors need the new table. Their old results are removed and cosmic-ray runs them.
    """
    import shutil

    started = time.time()
    shutil.rmtree(WORKDIR / "kit")
    shutil.copytree(SOURCE, WORKDIR / "kit" / "vgc_ref", ignore=shutil.ignore_patterns("__pycache__"))
    workers = len(list(WORKDIR.glob("w*.sqlite")))
    for w in range(workers):
        con = sqlite3.connect(WORKDIR / f"w{w}.sqlite")
        con.execute("delete from work_results where test_outcome = 'SURVIVED'")
        con.commit()
        con.close()
    _exec(workers)
    timing = json.loads((WORKDIR / "timing.json").read_text())
    timing["resume_s"] = timing.get("resume_s", 0) + time.time() - started
    (WORKDIR / "timing.json").write_text(json.dumps(timing))
    return summarize()


def summarize() -> dict:
    """The summary of the sessions in WORKDIR as they stand."""
    timing = json.loads((WORKDIR / "timing.json").read_text())
    workers = len(list(WORKDIR.glob("w*.sqlite")))
    sessions = [
        (None, WORKDIR / f"w{w}.sqlite", WORKDIR / f"w{w}-table-survivors.jsonl") for w in range(workers)
    ]
    summary = collect(sessions, timing["run_s"], timing["workers"], timing["examples"])
    summary["resume_s"] = round(timing.get("resume_s", 0), 1)
    excluded = json.loads((WORKDIR / "excluded.json").read_text())
    summary["excluded"] = excluded
    summary["total"] += len(excluded)
    summary["equivalent"] += len(excluded)
    eq = summary["equivalent"]
    summary["score"] = summary["killed"] / (summary["total"] - eq) if summary["total"] > eq else 1.0
    return summary


ANNOTATION = "in an annotation, never evaluated (from __future__ import annotations)"
MESSAGE = "in the wording of an error message, which the kit does not compare (only class and attributes)"


def _ranges(path: Path) -> tuple[dict[str, tuple[int, int]], list[tuple[int, int, int, int]]]:
    """(qualified function/class name -> (first line, last line), annotation spans) of a file."""
    import ast

    tree = ast.parse(path.read_text())
    named: dict[str, tuple[int, int]] = {}
    spans: list[tuple[int, int, int, int, str]] = []

    def visit(node, prefix=""):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
                name = prefix + child.name
                first = min([child.lineno] + [d.lineno for d in getattr(child, "decorator_list", [])])
                named[name] = (first, child.end_lineno)
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree)
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            notes.append(node.returns)
        if isinstance(node, ast.arg) and node.annotation is not None:
            notes.append(node.annotation)
        if isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        spans += [(a.lineno, a.col_offset, a.end_lineno, a.end_col_offset, ANNOTATION) for a in notes]
        # An f-string with a space in its literal text is the wording of a message; names
        # (``packets[2].words``, ``out[0]``) have none.
        if isinstance(node, ast.JoinedStr) and any(
            isinstance(v, ast.Constant) and " " in str(v.value) for v in node.values
        ):
            spans.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, MESSAGE))
    return named, spans


def _exclude(session: Path) -> list[dict]:
    """Remove (and return) the mutants that are equivalent by construction: those in code outside
    the protocol (OUTSIDE_PROTOCOL) and those inside annotations, which ``from __future__ import
    annotations`` never evaluates."""
    con = sqlite3.connect(session)
    rows = con.execute(
        "select job_id, module_path, operator_name, start_pos_row, start_pos_col from mutation_specs"
    ).fetchall()
    cache: dict[str, tuple] = {}
    gone = []
    for job_id, module_path, operator, row, col in rows:
        if module_path not in cache:
            cache[module_path] = _ranges(Path(module_path))
        named, spans = cache[module_path]
        module = Path(module_path).stem
        reason = None
        for name in OUTSIDE_PROTOCOL.get(module, []):
            first, last = named[name]
            if first <= row <= last:
                reason = f"in {name}, which no operation of the adapter protocol calls"
        for a, b, c, d, why in spans:
            if (a, b) <= (row, col) < (c, d):
                reason = why
        if reason:
            gone.append(
                {"module": module, "line": row, "operator": operator.split("/")[-1], "reason": reason}
            )
            con.execute("delete from mutation_specs where job_id = ?", (job_id,))
            con.execute("delete from work_items where job_id = ?", (job_id,))
    con.commit()
    con.close()
    return gone


def _limit_session(session: Path, limit: int) -> None:
    """Keep every k-th mutant only (a sample of about ``limit``), for a quick measurement."""
    con = sqlite3.connect(session)
    ids = [r[0] for r in con.execute("select job_id from work_items order by job_id")]
    step = max(1, len(ids) // limit)
    drop = [i for k, i in enumerate(ids) if k % step]
    con.executemany("delete from mutation_specs where job_id = ?", [(i,) for i in drop])
    con.executemany("delete from work_items where job_id = ?", [(i,) for i in drop])
    con.commit()
    con.close()


def _equivalents() -> list[dict]:
    """The equivalent mutants listed in docs/conformance.md ("Equivalent mutants")."""
    return _listed("### Equivalent mutants")


def _listed(heading: str) -> list[dict]:
    """The mutants listed under ``heading`` in docs/conformance.md, one per line:
    ``- `module`: `line before` -> `line after` -- reason``."""
    text = (ROOT / "docs" / "conformance.md").read_text()
    if heading not in text:
        return []
    section = text.split(heading)[1].split("\n## ")[0].split("\n### ")[0]
    rows = []
    for line in section.splitlines():
        m = re.match(r"^- `(\w+)`: `(.*)` -> `(.*)` -- (.*)$", line.strip())
        if m:
            rows.append({"module": m[1], "before": m[2], "after": m[3], "reason": m[4]})
    return rows


def _describe(spec, diff: str) -> tuple[str, str]:
    """(source line before, after) of a mutant's diff."""
    before = [x[1:].strip() for x in diff.splitlines() if x.startswith("-") and not x.startswith("---")]
    after = [x[1:].strip() for x in diff.splitlines() if x.startswith("+") and not x.startswith("+++")]
    return (before[0] if before else ""), (after[0] if after else "")


def collect(sessions, seconds: float, workers: int, examples: int) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db

    equivalents = _equivalents()
    results = []
    table_survivors = []
    for _shard, session, log in sessions:
        with use_db(str(session), WorkDB.Mode.open) as db:
            for item, result in db.completed_work_items:
                spec = item.mutations[0]
                before, after = _describe(spec, result.diff or "")
                module = Path(spec.module_path).stem
                line = spec.start_pos[0]
                entry = {
                    "module": module,
                    "line": line,
                    "operator": spec.operator_name.split("/")[-1],
                    "occurrence": spec.occurrence,
                    "before": before,
                    "after": after,
                    "outcome": str(
                        result.test_outcome.value if result.test_outcome else result.worker_outcome.value
                    ),
                }
                entry["equivalent"] = next(
                    (
                        e["reason"]
                        for e in equivalents
                        if e["module"] == module and (e["before"], e["after"]) == (before, after)
                    ),
                    None,
                )
                results.append(entry)
        if log.exists():
            table_survivors += [json.loads(x) for x in log.read_text().splitlines()]
    total = len(results)
    killed = sum(r["outcome"] in ("killed", "incompetent") for r in results)
    survived = [r for r in results if r["outcome"] == "survived"]
    equivalent = [r for r in survived if r["equivalent"]]
    return {
        "total": total,
        "killed": killed,
        "survived": len(survived),
        "equivalent": len(equivalent),
        "score": (killed / (total - len(equivalent))) if total > len(equivalent) else 1.0,
        "seconds": round(seconds, 1),
        "workers": workers,
        "examples": examples,
        "survivors": survived,
        "killed_only_by_hypothesis": sum(1 for t in table_survivors if t["hypothesis_killed"]),
        "killed_only_by_slow": sum(
            1
            for r in results
            if r["outcome"] != "survived"
            and any(
                (e["module"], e["before"], e["after"]) == (r["module"], r["before"], r["after"])
                for e in _listed("### Killed by the slow case only")
            )
        ),
        "results": results,
    }


def write_page(summary: dict, modules: list[str], path: Path) -> None:
    """docs/mutation.md: the score, the time, the survivors."""
    per_module = {}
    for r in summary["results"]:
        m = per_module.setdefault(r["module"], {"total": 0, "killed": 0, "equivalent": 0, "survived": 0})
        m["total"] += 1
        if r["outcome"] == "survived":
            m["equivalent" if r["equivalent"] else "survived"] += 1
        else:
            m["killed"] += 1
    for r in summary.get("excluded", []):
        m = per_module.setdefault(r["module"], {"total": 0, "killed": 0, "equivalent": 0, "survived": 0})
        m["total"] += 1
        m["equivalent"] += 1
    open_survivors = [r for r in summary["survivors"] if not r["equivalent"]]
    lines = [
        "# Mutation testing of the conformance kit",
        "",
        "Generated by `make mutation` (`python tools/mutation.py run`); do not edit by hand.",
        "How it works and the list of equivalent mutants: [conformance.md](conformance.md),",
        '"Mutation testing".',
        "",
        f"- modules: {', '.join(modules)}",
        f"- mutants: {summary['total']}; not run, outside the contract (code no protocol operation "
        f"reaches, annotations, error wording): {len(summary.get('excluded', []))}; run: "
        f"{summary['total'] - len(summary.get('excluded', []))}",
        f"- of those run: killed {summary['killed']}; survivors listed as equivalent, each with its "
        f"reason: {summary['equivalent'] - len(summary.get('excluded', []))}; surviving and not listed: "
        f"{len(open_survivors)}",
        f"- score (killed / run and not equivalent): **{summary['score']:.4f}**",
        f"- killed only by the Hypothesis layer (after the table let them through): "
        f"{summary['killed_only_by_hypothesis']}; only by the slow case (n = 2^27): "
        f"{summary.get('killed_only_by_slow', 0)}",
        f"- time: {summary['seconds']:.0f} s with {summary['workers']} workers "
        f"(Hypothesis layer at --derandomize --max-examples {summary['examples']}), measured under load"
        + (
            f"; the survivors run again after cases were added: {summary['resume_s']:.0f} s"
            if summary.get("resume_s")
            else ""
        ),
        "",
        "| module | mutants | killed | not run or equivalent | surviving |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in modules:
        c = per_module.get(m, {"total": 0, "killed": 0, "equivalent": 0, "survived": 0})
        lines.append(f"| {m} | {c['total']} | {c['killed']} | {c['equivalent']} | {c['survived']} |")
    reasons: dict[str, int] = {}
    for r in summary.get("excluded", []):
        key = f"{r['module']}: {r['reason']}"
        reasons[key] = reasons.get(key, 0) + 1
    lines += ["", "## Not run: outside the contract", ""]
    lines += [f"- {count} in {key}" for key, count in sorted(reasons.items())] or ["None."]
    lines += ["", "## Survivors listed as equivalent", ""]
    listed = [r for r in summary["survivors"] if r["equivalent"]]
    lines += [
        f"- {r['module']}:{r['line']} `{r['before']}` -> `{r['after']}`: {r['equivalent']}" for r in listed
    ]
    lines += ["None."] if not listed else []
    lines += ["", "## Surviving mutants not listed as equivalent", ""]
    if not open_survivors:
        lines.append("None.")
    else:
        lines += ["| module | line | operator | mutation |", "|---|---:|---|---|"]
        for r in open_survivors:
            lines.append(
                f"| {r['module']} | {r['line']} | {r['operator']} | `{r['before']}` -> `{r['after']}` |"
            )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    from vgc_ref._cli import ArgumentParser

    parser = ArgumentParser(prog="python tools/mutation.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="mutate every module, run the kit, write docs/mutation.md")
    p_run.add_argument("--modules", nargs="+", default=MODULES, choices=MODULES)
    p_run.add_argument("--workers", type=int, default=2)
    p_run.add_argument("--examples", type=int, default=10, help="Hypothesis examples for table survivors")
    p_run.add_argument("--sample", type=int, help="only about this many mutants per worker (a measurement)")
    p_run.add_argument("--page", default=str(ROOT / "docs" / "mutation.md"))
    p_run.add_argument("--json", default=str(WORKDIR.parent / "mutation-results.json"))
    for name, text in (
        ("resume", "after adding cases: run the survivors again against a new snapshot of the kit"),
        ("report", "rewrite docs/mutation.md from the sessions (after listing equivalents)"),
    ):
        extra = sub.add_parser(name, help=text)
        extra.add_argument("--page", default=str(ROOT / "docs" / "mutation.md"))
        extra.add_argument("--modules", nargs="+", default=MODULES, choices=MODULES)
    p_build = sub.add_parser("build", help="write DIR/vgc_mut, the unmutated copy")
    p_build.add_argument("dir")
    p_test = sub.add_parser("test", help="(run by cosmic-ray) test the mutant in COPY")
    p_test.add_argument("copy")
    p_test.add_argument("log")
    p_test.add_argument("examples", type=int)
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build(Path(args.dir)))
        return 0
    if args.command == "test":
        return test_mutant(Path(args.copy), Path(args.log), args.examples)
    if args.command == "resume":
        summary = resume()
        write_page(summary, args.modules, Path(args.page))
    elif args.command == "report":
        summary = summarize()
        write_page(summary, args.modules, Path(args.page))
    else:
        summary = run(args.modules, args.workers, args.examples, args.sample)
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
        if args.sample is None:
            write_page(summary, args.modules, Path(args.page))
    open_survivors = [r for r in summary["survivors"] if not r["equivalent"]]
    print(
        f"mutants {summary['total']}, killed {summary['killed']}, equivalent {summary['equivalent']}, "
        f"open survivors {len(open_survivors)}, score {summary['score']:.4f}, {summary['seconds']:.0f} s"
    )
    for r in open_survivors:
        print(f"  {r['module']}:{r['line']} {r['operator']}: {r['before']}  ->  {r['after']}")
    return 0 if not open_survivors else 1


if __name__ == "__main__":
    sys.exit(main())
