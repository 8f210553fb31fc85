"""``python -m vgc_ref.vectors``: bad directories and case inputs are refused up front.

The vectors are exported once per module; each test builds a small directory of golden
vectors from a few of its cases (every kind: steps, a sparse steps case made from a dense
one, aggregate, decode, dense, calls), breaks one thing, and runs ``run`` (or ``check``,
``export``). A refusal is exit status 2, one line ``python -m vgc_ref.vectors COMMAND:
error: ...`` on stderr, no traceback, the implementation never loaded, and no file
changed, inside the directory or outside it (a case name never leads out of DIR).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vgc_ref import vectors

CASES = ("nothing_sent", "multi_segment_every_codec", "aggregate_one_rank", "decode", "dense_random",
         "steps.hybrid_reset")  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exported") / "v"
    vectors.export(root)
    return root


def _sparsify(case: Path) -> None:
    """Turn a dense steps case into a sparse one: NAME.f32 -> NAME.idx.u32 + NAME.val.f32."""
    doc = json.loads((case / "case.json").read_text())
    doc["sparse"] = True
    doc["name"] = case.name
    (case / "case.json").write_text(json.dumps(doc))
    for path in sorted((case / "in").rglob("*.f32")):
        x = np.fromfile(path, "<f4")
        index = np.flatnonzero(x.view(np.uint32) != 0)
        Path(str(path)[: -len(".f32")] + ".idx.u32").write_bytes(index.astype("<u4").tobytes())
        Path(str(path)[: -len(".f32")] + ".val.f32").write_bytes(x[index].astype("<f4").tobytes())
        path.unlink()
    shutil.rmtree(case / "expected")


@pytest.fixture
def vdir(exported, tmp_path) -> Path:
    """tmp_path/v: the small set of cases and a sparse one; tmp_path/outside beside it."""
    root = tmp_path / "v"
    root.mkdir()
    for name in CASES:
        shutil.copytree(exported / name, root / name)
    shutil.copytree(exported / "nothing_sent", root / "sparse_small")
    _sparsify(root / "sparse_small")
    index = json.loads((exported / "index.json").read_text())
    index["cases"] = [c for c in index["cases"] if c["name"] in CASES]
    index["cases"].append({"name": "sparse_small", "kind": "steps", "description": "sparse"})
    (root / "index.json").write_text(json.dumps(index))
    outside = tmp_path / "outside"
    shutil.copytree(exported / "nothing_sent", outside)  # a valid case, outside DIR
    return root


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


def cmd(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = vectors.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, out, err, command: str, *fragments: str) -> None:
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"python -m vgc_ref.vectors {command}: error: "), lines[0]
    assert "Traceback" not in out + err and out == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --------------------------------------------------------------------------------------
# Mutations of DIR
# --------------------------------------------------------------------------------------


def index_edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        index = json.loads((root / "index.json").read_text())
        change(index)
        (root / "index.json").write_text(json.dumps(index))

    return mutate


def rename_case(name) -> Callable[[Path], None]:
    return index_edit(lambda ix: ix["cases"][0].update(name=name))


def case_edit(case: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / case / "case.json"
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))

    return mutate


def write(rel: str, data: bytes) -> Callable[[Path], None]:
    return lambda root: (root / rel).write_bytes(data)


def remove(rel: str) -> Callable[[Path], None]:
    return lambda root: (root / rel).unlink()


def link(rel: str, target: Callable[[Path], str]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        p = root / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        p.symlink_to(target(root))

    return mutate


def f32_edit(
    rel: str, change: Callable[[np.ndarray], np.ndarray], dtype: str = "<f4"
) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        p = root / rel
        p.write_bytes(change(np.fromfile(p, dtype)).astype(dtype).tobytes())

    return mutate


def at(i: int, value) -> Callable[[np.ndarray], np.ndarray]:
    def change(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[i] = value
        return x

    return change


def outside_case_named(name_of: Callable[[Path], str]) -> Callable[[Path], None]:
    """The first case renamed to a path that reaches the valid case in tmp_path/outside."""
    return lambda root: rename_case(name_of(root))(root)


def fifo(rel: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        (root / rel).unlink()
        os.mkfifo(root / rel)

    return mutate


def symlinked_in_dir(root: Path) -> None:
    """nothing_sent/in -> a copy of itself outside DIR (the same, valid files)."""
    shutil.move(str(root / "nothing_sent" / "in"), str(root.parent / "outside" / "in_copy"))
    (root / "nothing_sent" / "in").symlink_to(root.parent / "outside" / "in_copy")


G = "nothing_sent/in/step0/seg0.g.f32"
S = "nothing_sent/in/step0/seg0.s.f32"
SP = "sparse_small/in/step0/seg0.g"
CALL = "steps.hybrid_reset/in/call0"

BAD_DIRS = [
    # case names that would lead out of DIR (issue 20: '../' was followed, out/ rewritten)
    ("case ../outside", rename_case("../outside"), "not a plain name"),
    ("case absolute", outside_case_named(lambda r: str(r.parent / "outside")), "not a plain name"),
    ("case nested a/b", rename_case("nothing_sent/in"), "not a plain name"),
    ("case ..", rename_case(".."), "not a plain name"),
    ("case .", rename_case("."), "not a plain name"),
    ("case empty", rename_case(""), "is not a name"),
    ("case int", rename_case(5), "5 is not a name"),
    ("case null", rename_case(None), "None is not a name"),
    ("case NUL", rename_case("a\0b"), "not a plain name"),
    ("case backslash", rename_case("..\\outside"), "not a plain name"),
    ("case /proc", rename_case("/proc"), "not a plain name"),
    (
        "case dir a link out",
        lambda r: (r / "link").symlink_to(r.parent / "outside") or rename_case("link")(r),
        "leads outside",
    ),
    ("case dir missing", rename_case("no_such_case"), "no such directory"),
    ("case dir a file", lambda r: ((r / "f").write_text("x"), rename_case("f")(r)), "no such directory"),
    ("case listed twice", index_edit(lambda ix: ix["cases"].append(dict(ix["cases"][0]))), "more than once"),
    ("cases not a list", index_edit(lambda ix: ix.update(cases={})), "malformed case list"),
    (
        "case entry a string",
        index_edit(lambda ix: ix["cases"].__setitem__(0, "nothing_sent")),
        "malformed case list",
    ),
    ("index not JSON", write("index.json", b"{"), "not a readable JSON"),
    ("index other format", index_edit(lambda ix: ix.update(format="x")), "not vgc_ref golden vectors"),
    ("index a link to /dev/zero", link("index.json", lambda r: "/dev/zero"), "no index.json"),
    ("index a FIFO", fifo("index.json"), "no index.json"),
    (
        "index a link out",
        link("index.json", lambda r: str(r.parent / "outside" / "case.json")),
        "no index.json",
    ),
    # case.json
    ("case.json missing", remove("nothing_sent/case.json"), "missing"),
    ("case.json not JSON", write("nothing_sent/case.json", b"[1,"), "not a readable JSON"),
    (
        "case.json a link out",
        link("nothing_sent/case.json", lambda r: str(r.parent / "outside" / "case.json")),
        "leads outside",
    ),
    ("case.json a link to /dev/zero", link("nothing_sent/case.json", lambda r: "/dev/zero"), "leads outside"),
    ("kind unknown", case_edit("nothing_sent", lambda d: d.update(kind="x")), "field kind"),
    ("steps a string", case_edit("nothing_sent", lambda d: d.update(steps="3")), "field steps"),
    ("steps too many", case_edit("nothing_sent", lambda d: d.update(steps=4)), "step3/seg0.g.f32: missing"),
    ("n negative", case_edit("nothing_sent", lambda d: d["segments"][0].update(n=-1)), "field segments"),
    ("n wrong", case_edit("nothing_sent", lambda d: d["segments"][0].update(n=7)), "24 bytes, expected 28"),
    ("n huge", case_edit("nothing_sent", lambda d: d["segments"][0].update(n=10**12)), "> 2^27"),
    ("method other", case_edit("nothing_sent", lambda d: d["segments"][0].update(method="topk")), "method"),
    (
        "segment id twice",
        case_edit("multi_segment_every_codec", lambda d: d["segments"][1].update(segment_id=0)),
        "more than once",
    ),
    (
        "alpha negative",
        case_edit("nothing_sent", lambda d: d["segments"][0]["params"]["alpha"].update(value=-1.0)),
        "alpha",
    ),
    (
        "alpha a string",
        case_edit("nothing_sent", lambda d: d["segments"][0]["params"]["alpha"].update(value="2")),
        "params",
    ),
    (
        "residual other",
        case_edit("nothing_sent", lambda d: d["segments"][0]["params"].update(residual="x")),
        "residual",
    ),
    # steps inputs (issue 20: these were blamed on the implementation, exit 1)
    ("g missing", remove(G), "seg0.g.f32: missing"),
    ("g truncated", f32_edit(G, lambda x: x[:-1]), "20 bytes, expected 24"),
    ("g one byte short", lambda r: (r / G).write_bytes((r / G).read_bytes()[:-1]), "23 bytes, expected 24"),
    ("g longer", f32_edit(G, lambda x: np.append(x, 0)), "28 bytes, expected 24"),
    ("g empty", write(G, b""), "0 bytes, expected 24"),
    ("g a directory", lambda r: ((r / G).unlink(), (r / G).mkdir()), "not a regular file"),
    ("g a FIFO", fifo(G), "not a regular file"),
    ("g a link to /dev/zero", link(G, lambda r: "/dev/zero"), "leads outside"),
    (
        "g a link out",
        link(G, lambda r: str(r.parent / "outside" / "in" / "step0" / "seg0.g.f32")),
        "leads outside",
    ),
    ("in/ a link out", symlinked_in_dir, "leads outside"),
    ("g NaN", f32_edit(G, at(2, np.nan)), "element 2 is nan"),
    ("g inf", f32_edit(G, at(0, np.inf)), "element 0 is inf"),
    ("s NaN", f32_edit(S, at(1, np.nan)), "element 1 is nan"),
    ("s negative", f32_edit(S, at(3, -1.0)), "finite and >= 0"),
    (
        "strom g NaN",
        f32_edit("multi_segment_every_codec/in/step4/seg2.g.f32", at(0, np.nan)),
        "step4/seg2.g.f32: element 0 is nan",
    ),
    ("s missing", remove(S), "seg0.s.f32: missing"),
    # sparse inputs
    ("sparse idx not increasing", f32_edit(SP + ".idx.u32", lambda x: x[::-1], "<u4"), "strictly increasing"),
    ("sparse idx repeated", f32_edit(SP + ".idx.u32", at(1, 0), "<u4"), "strictly increasing"),
    ("sparse idx past n", f32_edit(SP + ".idx.u32", at(-1, 6), "<u4"), "below n = 6"),
    ("sparse idx huge", f32_edit(SP + ".idx.u32", at(-1, 2**32 - 1), "<u4"), "below n = 6"),
    ("sparse val short", f32_edit(SP + ".val.f32", lambda x: x[:-1]), "one value per index"),
    ("sparse idx odd size", lambda r: (r / (SP + ".idx.u32")).write_bytes(b"\0\0\0"), "3 bytes"),
    ("sparse val NaN", f32_edit(SP + ".val.f32", at(0, np.nan)), "element 0 is nan"),
    ("sparse val missing", remove(SP + ".val.f32"), "seg0.g.val.f32: missing"),
    # dense, aggregate, decode
    ("dense x short", f32_edit("dense_random/in/x.f32", lambda x: x[:-1]), "float32[batch, in]"),
    ("dense batch huge", case_edit("dense_random", lambda d: d.update(batch=10**12)), "float32[batch, in]"),
    ("dense delta missing", remove("dense_random/in/delta.f32"), "delta.f32: missing"),
    (
        "aggregate rank missing",
        case_edit("aggregate_one_rank", lambda d: d.update(ranks=2)),
        "rank1.bin: missing",
    ),
    ("aggregate ranks string", case_edit("aggregate_one_rank", lambda d: d.update(ranks="1")), "field ranks"),
    (
        "aggregate message /dev/zero",
        link("aggregate_one_rank/in/rank0.bin", lambda r: "/dev/zero"),
        "leads outside",
    ),
    (
        "decode name ../x",
        case_edit("decode", lambda d: d["messages"].append("../../outside/x")),
        "not a plain name",
    ),
    ("decode name nested", case_edit("decode", lambda d: d["messages"].append("a/b")), "not a plain name"),
    ("decode name ..", case_edit("decode", lambda d: d["messages"].append("..")), "not a plain name"),
    ("decode message missing", remove("decode/in/valid.bin"), "valid.bin: missing"),
    ("decode messages ints", case_edit("decode", lambda d: d.update(messages=[1])), "field messages"),
    # calls
    ("call input missing", remove(CALL + "/g.f32"), "do not match case.json"),
    ("call input short", f32_edit(CALL + "/g.f32", lambda x: x[:-1]), "do not match case.json"),
    ("call input /dev/zero", link(CALL + "/g.f32", lambda r: "/dev/zero"), "leads outside"),
    ("call input a FIFO", fifo(CALL + "/s.f32"), "not a regular file"),
    (
        "call op unknown",
        case_edit("steps.hybrid_reset", lambda d: d["calls"][0].update(op="rm")),
        "calls[].op",
    ),
    (
        "call params missing",
        case_edit("steps.hybrid_reset", lambda d: d["calls"][0].pop("params")),
        "do not match",
    ),
    # out/
    (
        "out a link out",
        lambda r: (r / "nothing_sent" / "out").symlink_to(r.parent / "outside"),
        "not a directory of the case",
    ),
    ("out a file", write("nothing_sent/out", b"x"), "not a directory of the case"),
]


@pytest.mark.parametrize("mutate,fragment", [c[1:] for c in BAD_DIRS], ids=[c[0] for c in BAD_DIRS])
def test_run_refuses_bad_vectors_up_front(vdir, tmp_path, capsys, mutate, fragment):
    """Refused in one line before the implementation is loaded; no file changes anywhere."""
    mutate(vdir)
    marker = tmp_path / "loaded"
    impl = tmp_path / "impl.py"
    impl.write_text(f"from vgc_ref import *  # noqa\nopen({str(marker)!r}, 'w').close()\n")
    before = snapshot(tmp_path)
    assert_refused(*cmd(["run", str(vdir), "--impl", str(impl)], capsys), "run", fragment)
    assert not marker.exists(), "the implementation was loaded before the vectors were checked"
    assert snapshot(tmp_path) == before


CHECK_REFUSES = [c for c in BAD_DIRS if c[0].startswith(("case ", "cases ", "index "))]


@pytest.mark.parametrize("mutate,fragment", [c[1:] for c in CHECK_REFUSES], ids=[c[0] for c in CHECK_REFUSES])
def test_check_refuses_case_names_that_leave_the_directory(vdir, tmp_path, capsys, mutate, fragment):
    mutate(vdir)
    before = snapshot(tmp_path)
    assert_refused(*cmd(["check", str(vdir)], capsys), "check", fragment)
    assert snapshot(tmp_path) == before


BAD_ARGUMENTS = [
    ("run ''", lambda v, t: ["run", ""], "DIR is empty"),
    ("check ''", lambda v, t: ["check", ""], "DIR is empty"),
    ("export ''", lambda v, t: ["export", ""], "DIR is empty"),
    ("run no such DIR", lambda v, t: ["run", str(t / "none")], "no such directory"),
    ("run DIR a file", lambda v, t: ["run", str(v / "index.json")], "no such directory"),
    ("run /proc", lambda v, t: ["run", "/proc"], "no index.json"),
    ("run --case unknown", lambda v, t: ["run", str(v), "--case", "nope"], "--case nope"),
    ("run --case ../outside", lambda v, t: ["run", str(v), "--case", "../outside"], "--case ../outside"),
    ("run --case ''", lambda v, t: ["run", str(v), "--case", ""], "--case "),
    ("run --impl unloadable", lambda v, t: ["run", str(v), "--impl", "no_such_module_x"], "cannot load it"),
    ("export to a file", lambda v, t: ["export", str(v / "index.json")], "not a directory"),
    ("export under a file", lambda v, t: ["export", str(v / "index.json" / "x")], "is not a directory"),
    ("export /dev/null", lambda v, t: ["export", "/dev/null"], "not a directory"),
    ("export into /proc", lambda v, t: ["export", "/proc/vectors"], "not writable"),
]


@pytest.mark.parametrize("argv,fragment", [c[1:] for c in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS])
def test_bad_arguments_are_refused(vdir, tmp_path, capsys, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path / "outside")  # an empty DIR must not mean the working directory
    before = snapshot(tmp_path)
    args = argv(vdir, tmp_path)
    assert_refused(*cmd(args, capsys), args[0], fragment)
    assert snapshot(tmp_path) == before


def test_good_vectors_run_and_check(vdir, tmp_path, capsys):
    """Every kind of case passes the checks and matches; the sparse case gives the dense
    case's outputs, stored sparsely."""
    code, out, err = cmd(["run", str(vdir)], capsys)
    assert (code, err) == (0, ""), err
    assert out.count("ran ") == len(CASES) + 1
    code, out, err = cmd(["check", str(vdir), *(a for name in CASES for a in ("--case", name))], capsys)
    assert (code, err) == (0, "") and "all cases match" in out, out
    dense = sorted((vdir / "nothing_sent" / "out").rglob("*.f32"))
    assert dense
    for path in dense:
        base = (
            vdir
            / "sparse_small"
            / "out"
            / str(path.relative_to(vdir / "nothing_sent" / "out"))[: -len(".f32")]
        )
        x = np.fromfile(path, "<f4")
        index = np.fromfile(f"{base}.idx.u32", "<u4")
        assert np.array_equal(index, np.flatnonzero(x.view(np.uint32)))
        assert np.fromfile(f"{base}.val.f32", "<u4").tobytes() == x[index].tobytes()


def test_a_raising_implementation_is_its_failure_not_a_refusal(vdir, tmp_path, capsys):
    """Valid inputs: an implementation that raises is exit 1, named per case, the rest run."""
    impl = tmp_path / "raising.py"
    impl.write_text(
        "from vgc_ref import *  # noqa\ndef dense_grad_var(x, delta):\n    raise RuntimeError('no')\n"
    )
    code, out, err = cmd(["run", str(vdir), "--impl", str(impl)], capsys)
    assert code == 1 and err == ""
    assert "error dense_random: the implementation raised RuntimeError: no" in out
    assert "ran   nothing_sent" in out


def test_run_writes_only_the_cases_out_directories(vdir, tmp_path, capsys):
    """A good run changes nothing but DIR/<case>/out/ (and never tmp_path/outside)."""
    before = snapshot(tmp_path)
    assert cmd(["run", str(vdir)], capsys)[0] == 0
    after = snapshot(tmp_path)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    assert changed and all("/out" in p[len(str(vdir)) :] for p in changed), sorted(changed)[:5]
    assert all(p.startswith(str(vdir)) for p in changed)


def test_export_replaces_links_in_dir_without_following_them(tmp_path, capsys):
    """A case directory or index.json that is a link out of DIR is replaced, not written through."""
    root = tmp_path / "v"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (outside / "index.json").write_text("{}")
    (root / "nothing_sent").symlink_to(outside)
    (root / "index.json").symlink_to(outside / "index.json")
    before = snapshot(outside)
    code, out, err = cmd(["export", str(root)], capsys)
    assert (code, err) == (0, "") and "wrote" in out, err
    assert snapshot(outside) == before
    assert not (root / "nothing_sent").is_symlink() and (root / "nothing_sent" / "case.json").is_file()
    assert not (root / "index.json").is_symlink()
