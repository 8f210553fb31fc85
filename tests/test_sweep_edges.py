"""``python -m mpi_demo sweep``: bad results files, caches and paths are refused up front.

Nothing here trains: every case is refused before the first run (``--reuse`` with a bad
cache, a bad path or option) or renders a small results.json made by hand for the quick
plan's ``synthetic-mlp`` study (``--render``). A refusal is exit status 2, one line
``python -m mpi_demo sweep: error: ...`` on stderr, nothing on stdout, no traceback, and no
file changed or created.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mpi_demo.study import cache, plan, report
from mpi_demo.study.cli import main

PROG = "python -m mpi_demo sweep"
STUDY = "synthetic-mlp"
SEEDS = (1, 2, 3)


def _run(method, value, seed, acc=0.9, ratio=10.0) -> dict:
    return {
        "study": STUDY, "method": method, "value": value, "seed": seed, "phase": "test", "accuracy": acc,
        "compression_ratio": ratio, "sent_fraction": 1 / ratio, "bytes_per_step": 4000 / ratio, "steps": 20,
        "n_params": 1000, "compute_s": 0.002, "variance_s": 0.0001, "validation_curve": [acc],
    }  # fmt: skip


def results_doc() -> dict:
    """A valid results.json of the quick plan's synthetic-mlp study, every setting, 3 seeds."""
    study = next(s for s in plan.QUICK if s.name == STUDY)
    runs = []
    for seed in SEEDS:
        runs.append(_run("none", None, seed, 0.9, 1.0))
        for method, values in study.grids.items():
            runs += [_run(method, v, seed, 0.9 - 0.001 * seed, 10.0 * v + 5) for v in values]
    return {
        "command": "python -m mpi_demo sweep --quick", "date": "2026-01-01 00:00 UTC", "code_hash": "c" * 64,
        "provenance": {"commit": "a" * 40, "dirty": False, "machine": {"platform": "x", "cores": 2},
                       "versions": {}},
        "elapsed_s": 60.0, "jobs": 2, "load": [0.5, 1.0], "n_trained": len(runs), "n_cached": 0,
        "studies": [plan.study_dict(study)], "seeds": list(SEEDS), "tolerance": plan.TOLERANCE,
        "runs": runs,
    }  # fmt: skip


def snapshot(root: Path) -> dict[str, str]:
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                files[str(p)] = "link:" + os.readlink(p)
            elif p.is_file():
                files[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                files[str(p)] = "dir" if p.is_dir() else "other"
    return files


def sweep(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, out, err, *fragments: str) -> None:
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: "), lines[0]
    assert "Traceback" not in out + err and out == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def results(tmp_path) -> Path:
    path = tmp_path / "in" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(results_doc()))
    return path


# --------------------------------------------------------------------------------------
# --render: the results.json is checked whole before anything is written
# --------------------------------------------------------------------------------------


def doc_edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))

    return mutate


def raw(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def run0(change: Callable[[dict], None]) -> Callable[[Path], None]:
    return doc_edit(lambda d: change(d["runs"][0]))


def runs_where(keep: Callable[[dict], bool]) -> Callable[[Path], None]:
    return doc_edit(lambda d: d.update(runs=[r for r in d["runs"] if keep(r)]))


def replace_path(make: Callable[[Path], None]) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        path.unlink()
        make(path)

    return mutate


def shift_seeds(method: str) -> Callable[[Path], None]:
    def change(d):
        for r in d["runs"]:
            if r["method"] == method and r["value"] == 1.0:
                r["seed"] += 10

    return doc_edit(change)


BAD_RESULTS = [
    ("not JSON", raw(b"{"), "not a readable JSON"),
    ("empty file", raw(b""), "not a readable JSON"),
    ("not UTF-8", raw(b'{"a": "\xff"}'), "not a readable JSON"),
    ("NaN literal", raw(b'{"command": NaN}'), "NaN is not JSON"),
    ("a JSON list", raw(b"[]"), "expected an object"),
    ("runs missing", doc_edit(lambda d: d.pop("runs")), "runs is None"),
    ("runs a dict", doc_edit(lambda d: d.update(runs={})), "runs is {}"),
    ("run a number", doc_edit(lambda d: d["runs"].__setitem__(0, 1)), "runs[0] is a JSON int"),
    ("run accuracy missing", run0(lambda r: r.pop("accuracy")), "runs[0].accuracy is missing"),
    ("run accuracy string", run0(lambda r: r.update(accuracy="0.9")), "runs[0].accuracy is '0.9'"),
    ("run accuracy 1.5", run0(lambda r: r.update(accuracy=1.5)), "runs[0].accuracy is 1.5"),
    ("run accuracy true", run0(lambda r: r.update(accuracy=True)), "runs[0].accuracy is True"),
    ("run seed float", run0(lambda r: r.update(seed=1.0)), "runs[0].seed is 1.0"),
    ("run value string", run0(lambda r: r.update(value="1")), "runs[0].value is '1'"),
    ("run study unknown", run0(lambda r: r.update(study="x")), "runs[0].study 'x'"),
    ("run method empty", run0(lambda r: r.update(method="")), "runs[0].method is ''"),
    ("run steps 0", run0(lambda r: r.update(steps=0)), "runs[0].steps is 0"),
    ("run bytes_per_step 0", run0(lambda r: r.update(bytes_per_step=0)), "runs[0].bytes_per_step is 0"),
    ("run compute_s 0", run0(lambda r: r.update(compute_s=0.0)), "runs[0].compute_s is 0.0"),
    ("run ratio negative", run0(lambda r: r.update(compression_ratio=-1)), "compression_ratio is -1"),
    ("run n_params huge float", run0(lambda r: r.update(n_params=1e300)), "n_params is 1e+300"),
    ("run curve a string", run0(lambda r: r.update(validation_curve="x")), "validation_curve is 'x'"),
    ("run curve with 2.0", run0(lambda r: r.update(validation_curve=[2.0])), "validation_curve"),
    ("run repeated", doc_edit(lambda d: d["runs"].append(dict(d["runs"][0]))), "repeats runs[0]"),
    ("no baseline", runs_where(lambda r: r["method"] != "none"), "no baseline run"),
    ("only the baseline", runs_where(lambda r: r["method"] == "none"), "no run of a compressed setting"),
    ("no seed in common", shift_seeds("vgc"), "shares no seed with the baseline"),
    ("studies missing", doc_edit(lambda d: d.pop("studies")), "studies is None"),
    ("studies empty", doc_edit(lambda d: d.update(studies=[])), "studies is []"),
    ("study without name", doc_edit(lambda d: d["studies"][0].pop("name")), "studies[0] is"),
    ("study unknown", doc_edit(lambda d: d["studies"][0].update(name="cifar")), "'cifar' is not a study"),
    ("study twice", doc_edit(lambda d: d["studies"].append(d["studies"][0])), "listed twice"),
    ("provenance missing", doc_edit(lambda d: d.pop("provenance")), "provenance.commit is missing"),
    ("commit an int", doc_edit(lambda d: d["provenance"].update(commit=5)), "provenance.commit is 5"),
    ("cores a string", doc_edit(lambda d: d["provenance"]["machine"].update(cores="2")), "cores is '2'"),
    ("code_hash missing", doc_edit(lambda d: d.pop("code_hash")), "code_hash is missing"),
    ("code_hash short", doc_edit(lambda d: d.update(code_hash="ab")), "code_hash is 'ab'"),
    ("load one number", doc_edit(lambda d: d.update(load=[1.0])), "load is [1.0]"),
    ("seeds a string", doc_edit(lambda d: d.update(seeds="1,2")), "seeds is '1,2'"),
    ("command an int", doc_edit(lambda d: d.update(command=1)), "command is 1"),
    ("elapsed NaN-free but huge", doc_edit(lambda d: d.update(elapsed_s="60")), "elapsed_s is '60'"),
    ("a directory", replace_path(lambda p: p.mkdir()), "is a directory"),
    ("a FIFO", replace_path(os.mkfifo), "not a regular file"),
    ("a link to /dev/zero", replace_path(lambda p: p.symlink_to("/dev/zero")), "not a regular file"),
]


@pytest.mark.parametrize("mutate,fragment", [c[1:] for c in BAD_RESULTS], ids=[c[0] for c in BAD_RESULTS])
def test_render_refuses_a_bad_results_file(results, tmp_path, capsys, mutate, fragment):
    """Refused in one line naming the entry; no output file written, the input unchanged."""
    mutate(results)
    (tmp_path / "page.md").write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\n")
    before = snapshot(tmp_path)
    argv = [
        "--quick",
        "--render",
        str(results),
        "--out",
        str(tmp_path / "out"),
        "--markdown",
        str(tmp_path / "page.md"),
    ]
    assert_refused(*sweep(argv, capsys), f"--render {results}", fragment)
    assert snapshot(tmp_path) == before


def test_render_of_a_good_results_file(results, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    code, _, err = sweep(["--quick", "--render", str(results), "--out", str(out)], capsys)
    assert (code, err) == (0, ""), err
    assert {p.name for p in out.iterdir()} == {"results.csv", "results.json", report.FIGURE}
    assert json.loads((out / "results.json").read_text())["runs"] == results_doc()["runs"]


def test_render_rebuilds_its_results_file_in_place(results, tmp_path, capsys):
    """Without --out, --render writes beside its input: results.json is rewritten, on purpose."""
    pytest.importorskip("matplotlib")
    code, _, err = sweep(["--quick", "--render", str(results)], capsys)
    assert (code, err) == (0, ""), err
    doc = json.loads(results.read_text())
    assert "rendered_at" in doc and doc["runs"] == results_doc()["runs"]
    assert (results.parent / "results.csv").exists()


# --------------------------------------------------------------------------------------
# --reuse: the cache is checked line by line before any run
# --------------------------------------------------------------------------------------


KEY = "0" * 64
GOOD_LINE = json.dumps({"key": KEY, "row": _run("none", None, 1)})


def cache_lines(*lines: str, data: bytes | None = None) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(data if data is not None else ("\n".join(lines) + "\n").encode())

    return make


def line_with(**changes) -> str:
    item = {"key": KEY, "row": _run("none", None, 1)}
    item.update(changes)
    return json.dumps(item)


def row_with(**changes) -> str:
    row = _run("none", None, 1)
    row.update(changes)
    for key in [k for k, v in changes.items() if v is ...]:
        row.pop(key)
    return json.dumps({"key": KEY, "row": row})


BAD_CACHES = [
    ("garbage line", cache_lines(GOOD_LINE, "garbage", GOOD_LINE), "line 2 is not a JSON record"),
    ("a JSON list line", cache_lines("[1, 2]"), 'line 1 is not {"key"'),
    ("a JSON string line", cache_lines('"x"'), "line 1 is not"),
    ("key missing", cache_lines(json.dumps({"row": {}})), "line 1 is not"),
    ("extra field", cache_lines(line_with(extra=1)), "line 1 is not"),
    ("key not hex", cache_lines(line_with(key="z" * 64)), "line 1: key"),
    ("key an int", cache_lines(line_with(key=5)), "line 1: key 5"),
    ("row a list", cache_lines(line_with(row=[])), "line 1: row is a JSON list"),
    (
        "row accuracy missing",
        cache_lines(GOOD_LINE, row_with(accuracy=...)),
        "line 2: row.accuracy is missing",
    ),
    ("row accuracy string", cache_lines(row_with(accuracy="x")), "row.accuracy is 'x'"),
    (
        "row NaN",
        cache_lines(GOOD_LINE.replace('"accuracy": 0.9', '"accuracy": NaN')),
        "line 1: NaN is not JSON",
    ),
    ("row seed null", cache_lines(row_with(seed=None)), "row.seed is None"),
    ("not UTF-8", cache_lines(data=b"\xff\xfe\n"), "cannot read it"),
    ("NUL bytes", cache_lines(data=b"\0\0\0\n"), "line 1 is not a JSON record"),
]


@pytest.mark.parametrize("make,fragment", [c[1:] for c in BAD_CACHES], ids=[c[0] for c in BAD_CACHES])
def test_reuse_refuses_a_bad_cache_before_any_run(tmp_path, capsys, make, fragment):
    path = tmp_path / "cache.jsonl"
    make(path)
    before = snapshot(tmp_path)
    argv = ["--quick", "--studies", STUDY, "--jobs", "1", "--reuse", "--out", str(tmp_path / "out"),
            "--cache", str(path)]  # fmt: skip
    assert_refused(*sweep(argv, capsys), f"--cache {path}", fragment)
    assert snapshot(tmp_path) == before


def test_cache_skips_a_line_cut_short_and_appends_after_it(tmp_path):
    """An interrupted sweep leaves a cut last line: it is skipped, and the next run's line
    starts on a line of its own, so both complete lines load."""
    path = tmp_path / "cache.jsonl"
    path.write_text(GOOD_LINE + "\n" + GOOD_LINE[:50])
    assert list(cache.load(path)) == [KEY]
    other = "1" * 64
    cache.append(path, other, _run("none", None, 2))
    assert list(cache.load(path)) == [KEY, other]
    assert path.read_text().splitlines()[1] == GOOD_LINE[:50]


def test_cache_garbage_that_is_not_a_cut_line_is_refused(tmp_path):
    path = tmp_path / "cache.jsonl"
    path.write_text(GOOD_LINE + "\n" + "not json\n")
    with pytest.raises(cache.CacheError, match="line 2"):
        cache.load(path)


# --------------------------------------------------------------------------------------
# Options and paths
# --------------------------------------------------------------------------------------


def make_fifo(t: Path) -> str:
    os.mkfifo(t / "fifo")
    return str(t / "fifo")


BAD_OPTIONS = [
    ("--studies ''", lambda t, r: ["--studies", ""], "--studies is empty"),
    ("--studies with an empty name", lambda t, r: ["--studies", f"{STUDY},"], "--studies ''"),
    ("--studies twice", lambda t, r: ["--studies", f"{STUDY},{STUDY}"], "named twice"),
    ("--out ''", lambda t, r: ["--out", ""], "--out is empty"),
    ("--markdown ''", lambda t, r: ["--markdown", ""], "--markdown is empty"),
    ("--cache ''", lambda t, r: ["--cache", ""], "--cache is empty"),
    ("--render ''", lambda t, r: ["--render", ""], "--render is empty"),
    ("--out a file", lambda t, r: ["--out", str(r)], "not a directory"),
    ("--out under a file", lambda t, r: ["--out", str(r / "x")], "is not a directory"),
    ("--out in /proc", lambda t, r: ["--out", "/proc/sweep-out"], "not writable"),
    ("--out /dev/null", lambda t, r: ["--out", "/dev/null"], "not a directory"),
    ("--markdown a directory", lambda t, r: ["--markdown", str(t)], "is a directory"),
    ("--markdown /dev/null", lambda t, r: ["--markdown", "/dev/null"], "not a regular file"),
    (
        "--markdown not UTF-8",
        lambda t, r: (t.joinpath("m.md").write_bytes(b"\xff"), ["--markdown", str(t / "m.md")])[1],
        "UTF-8",
    ),
    (
        "--markdown one marker",
        lambda t, r: (t.joinpath("m.md").write_text(report.BEGIN), ["--markdown", str(t / "m.md")])[1],
        "one without the other",
    ),
    (
        "--markdown markers reversed",
        lambda t, r: (
            t.joinpath("m.md").write_text(report.END + report.BEGIN),
            ["--markdown", str(t / "m.md")],
        )[1],
        "out of order",
    ),
    ("--markdown no such dir", lambda t, r: ["--markdown", str(t / "no" / "m.md")], "does not exist"),
    ("--cache a directory", lambda t, r: ["--cache", str(t)], "is a directory"),
    ("--cache /dev/zero", lambda t, r: ["--cache", "/dev/zero"], "not a regular file"),
    ("--cache a FIFO", lambda t, r: ["--cache", make_fifo(t)], "not a regular file"),
    ("--cache in /proc", lambda t, r: ["--cache", "/proc/sweep/cache.jsonl"], "--cache"),
    (
        "--cache same as --markdown",
        lambda t, r: ["--cache", str(t / "a"), "--markdown", str(t / "a")],
        "name the same file",
    ),
    (
        "--cache is out/results.json",
        lambda t, r: ["--out", str(t / "o"), "--cache", str(t / "o" / "results.json")],
        "name the same file",
    ),
    (
        "--markdown is out/results.csv",
        lambda t, r: ["--out", str(t), "--markdown", str(t / "results.csv")],
        "name the same file",
    ),
    (
        "--cache is the figure via ..",
        lambda t, r: ["--out", str(t / "o"), "--cache", str(t / "o" / ".." / "o" / report.FIGURE)],
        "name the same file",
    ),
    ("--render with --reuse", lambda t, r: ["--render", str(r), "--reuse"], "--reuse applies to training"),
    ("--render with --studies", lambda t, r: ["--render", str(r), "--studies", STUDY], "--studies applies"),
    ("--render with --cache", lambda t, r: ["--render", str(r), "--cache", str(t / "c")], "--cache applies"),
    ("--render no such file", lambda t, r: ["--render", str(t / "none.json")], "no such file"),
    ("--render /proc/self/status", lambda t, r: ["--render", "/proc/self/status"], "not a readable JSON"),
    (
        "--render same as --markdown",
        lambda t, r: ["--render", str(r), "--markdown", str(r)],
        "name the same file",
    ),
    (
        "--render is out/results.csv",
        lambda t, r: ["--render", str(r), "--out", str(t), "--markdown", str(t / "results.csv")],
        "name the same file",
    ),
    ("--jobs 0", lambda t, r: ["--jobs", "0"], "--jobs 0"),
]


@pytest.mark.parametrize("argv,fragment", [c[1:] for c in BAD_OPTIONS], ids=[c[0] for c in BAD_OPTIONS])
def test_bad_options_are_refused_before_any_run(results, tmp_path, capsys, argv, fragment):
    args = argv(tmp_path, results)
    before = snapshot(tmp_path)
    defaults = (
        ["--quick", "--studies", STUDY] if "--studies" not in args and "--render" not in args else ["--quick"]
    )
    if "--out" not in args:
        defaults += ["--out", str(tmp_path / "out")]
    if "--cache" not in args and "--render" not in args:
        defaults += ["--cache", str(tmp_path / "cache.jsonl")]
    assert_refused(*sweep([*defaults, *args], capsys), fragment)
    assert snapshot(tmp_path) == before
