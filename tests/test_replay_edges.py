"""``python -m vgc_ref.conformance --replay DIR``: every bad dump is refused up front.

Each case below breaks one rule of docs/conformance.md ("Replaying a training run") in a
fresh copy of a tiny real dump (2 ranks, 2 steps, made once per module by ``python -m
mpi_demo train --dump-inputs``). A refusal is exit status 2, one line ``python -m
vgc_ref.conformance: error: ...`` on stderr, nothing on stdout, no traceback, the
implementation never loaded, and no file changed inside or outside the dump.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vgc_ref.conformance.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
PROG = "python -m vgc_ref.conformance"


@pytest.fixture(scope="module")
def made_dump(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("made") / "dump"
    done = subprocess.run(
        [sys.executable, "-m", "mpi_demo", "train", "--simulate-ranks", "2", "--samples", "200",
         "--hidden", "4", "--batch", "8", "--steps", "2", "--dump-inputs", str(directory),
         "--dump-steps", "2"],
        cwd=ROOT, env={**os.environ, "NUMBA_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return directory


@pytest.fixture
def dump(made_dump, tmp_path) -> Path:
    """A fresh copy of the dump at tmp_path/dump, with tmp_path/outside beside it."""
    copy = tmp_path / "dump"
    shutil.copytree(made_dump, copy)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_bytes(b"outside")
    return copy


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its kind and contents' hash (links not followed)."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if p.is_symlink():
                files[str(p)] = "link:" + os.readlink(p)
            elif p.is_file():
                files[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                files[str(p)] = "other"
    return files


def kit(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: "), lines[0]
    assert "Traceback" not in err + out
    assert out == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --------------------------------------------------------------------------------------
# The bad dumps: (id, mutation of DIR, fragment the one line must hold)
# --------------------------------------------------------------------------------------


def _index(d: Path) -> dict:
    return json.loads((d / "index.json").read_text())


def edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """A mutation that edits index.json as a dict."""

    def mutate(d: Path) -> None:
        index = _index(d)
        change(index)
        (d / "index.json").write_text(json.dumps(index))

    return mutate


def raw_index(text: bytes) -> Callable[[Path], None]:
    return lambda d: (d / "index.json").write_bytes(text)


def rec(index: dict, i: int = 0) -> dict:
    return index["records"][i]


def g_name(d: Path, i: int = 0, j: int = 0, key: str = "g") -> Path:
    return d / rec(_index(d), i)["segments"][j][key]


def save_g(array, i: int = 0, j: int = 0, key: str = "g") -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        path = g_name(d, i, j, key)
        a = np.load(path)
        np.save(path, array(a))

    return mutate


def with_nan(a):
    a = a.copy()
    a[1] = np.nan
    return a


def with_inf(a):
    a = a.copy()
    a[0] = -np.inf
    return a


def negative(a):
    a = a.copy()
    a[2] = -1.0
    return a


def rename_message(name: str) -> Callable[[Path], None]:
    return edit(lambda ix: rec(ix).update(message=name))


def link_message(target: str) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        name = d / rec(_index(d))["message"]
        name.unlink()
        name.symlink_to(target)

    return mutate


def fifo_message(d: Path) -> None:
    name = d / rec(_index(d))["message"]
    name.unlink()
    os.mkfifo(name)


def subdir_message(d: Path) -> None:
    (d / "sub").mkdir()
    rename_message("sub")(d)


def truncate(path_of: Callable[[Path], Path], keep: int) -> Callable[[Path], None]:
    def mutate(d: Path) -> None:
        p = path_of(d)
        p.write_bytes(p.read_bytes()[:keep])

    return mutate


def flip_message_byte(d: Path) -> None:
    p = d / rec(_index(d))["message"]
    data = bytearray(p.read_bytes())
    data[-1] ^= 1
    p.write_bytes(bytes(data))


def drop_record(step: int, rank: int) -> Callable[[Path], None]:
    def change(ix):
        ix["records"] = [r for r in ix["records"] if (r["step"], r["rank"]) != (step, rank)]

    return edit(change)


def huge_npy_header(d: Path) -> None:
    """A g whose .npy header claims 2^40 elements: refused from the header, nothing read."""
    path = g_name(d)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (1 << 40,)})


def pickled_object_array(d: Path) -> None:
    np.save(g_name(d), np.array([{"x": 1}] * 128, dtype=object), allow_pickle=True)


def outside_copy(key: str) -> Callable[[Path], None]:
    """g (or s) named ``../outside/NAME``, a real .npy file of the right shape outside DIR."""

    def mutate(d: Path) -> None:
        index = _index(d)
        seg = rec(index)["segments"][0]
        shutil.copy(d / seg[key], d.parent / "outside" / "copy.npy")
        seg[key] = "../outside/copy.npy"
        (d / "index.json").write_text(json.dumps(index))

    return mutate


def same_g_and_s(ix):
    seg = rec(ix)["segments"][0]
    seg["s"] = seg["g"]


def strom_with_s(ix):
    ix["method"], ix["params"] = "strom", {"tau": 0.01}


BAD_DUMPS = [
    # the index itself
    ("index missing", lambda d: (d / "index.json").unlink(), "cannot read the index"),
    ("index not JSON", raw_index(b"{not json"), "cannot read the index"),
    ("index empty file", raw_index(b""), "cannot read the index"),
    ("index non-ASCII", raw_index('{"format": "é"}'.encode()), "cannot read the index"),
    ("index a JSON list", raw_index(b"[1, 2]"), "expected an object"),
    ("index NaN literal", raw_index(b'{"format": NaN}'), "NaN is not JSON"),
    (
        "index a directory",
        lambda d: ((d / "index.json").unlink(), (d / "index.json").mkdir()),
        "not a regular",
    ),
    (
        "index link to /dev/zero",
        lambda d: ((d / "index.json").unlink(), (d / "index.json").symlink_to("/dev/zero")),
        "outside",
    ),
    ("format other", edit(lambda ix: ix.update(format="vgc-trace")), "format 'vgc-trace'"),
    ("version 99", edit(lambda ix: ix.update(version=99)), "version 99"),
    ("version string", edit(lambda ix: ix.update(version="1")), "version '1'"),
    ("version true", edit(lambda ix: ix.update(version=True)), "version True"),
    ("method none", edit(lambda ix: ix.update(method="none")), "method 'none'"),
    ("params missing", edit(lambda ix: ix.pop("params")), "params is None"),
    ("params.alpha missing", edit(lambda ix: ix["params"].pop("alpha")), "params.alpha is missing"),
    ("params.alpha string", edit(lambda ix: ix["params"].update(alpha="2")), "params.alpha is '2'"),
    ("params.alpha negative", edit(lambda ix: ix["params"].update(alpha=-2.0)), "alpha"),
    ("params.zeta 2", edit(lambda ix: ix["params"].update(zeta=2.0)), "zeta"),
    ("params.tau huge", edit(lambda ix: ix["params"].update(tau=1e300)), "tau"),
    ("params.residual int", edit(lambda ix: ix["params"].update(residual=5)), "params.residual is 5"),
    ("params.residual other", edit(lambda ix: ix["params"].update(residual="keep")), "residual"),
    ("ranks 0", edit(lambda ix: ix.update(ranks=0)), "ranks is 0"),
    ("ranks string", edit(lambda ix: ix.update(ranks="2")), "ranks is '2'"),
    ("steps negative", edit(lambda ix: ix.update(steps=-1)), "steps is -1"),
    ("segments empty", edit(lambda ix: ix.update(segments=[])), "segments is []"),
    ("segments a dict", edit(lambda ix: ix.update(segments={})), "segments is {}"),
    (
        "segment n huge",
        edit(lambda ix: ix["segments"][0].update(n=1 << 40)),
        "segments[0].n is 1099511627776",
    ),
    ("segment n negative", edit(lambda ix: ix["segments"][0].update(n=-1)), "segments[0].n is -1"),
    ("segment n float", edit(lambda ix: ix["segments"][0].update(n=128.0)), "segments[0].n is 128.0"),
    ("segment n wrong", edit(lambda ix: ix["segments"][0].update(n=127)), "expected float32[127]"),
    ("segment name missing", edit(lambda ix: ix["segments"][0].pop("name")), "segments[0]"),
    # the records
    ("records empty", edit(lambda ix: ix.update(records=[])), "records is empty"),
    ("records missing", edit(lambda ix: ix.pop("records")), "records is None"),
    ("records a dict", edit(lambda ix: ix.update(records={})), "records is {}"),
    ("record a string", edit(lambda ix: ix["records"].__setitem__(0, "x")), "records[0] is 'x'"),
    ("record step missing", edit(lambda ix: rec(ix).pop("step")), "records[0].step is None"),
    ("record step past steps", edit(lambda ix: rec(ix).update(step=2)), "records[0].step is 2"),
    ("record step bool", edit(lambda ix: rec(ix).update(step=False)), "records[0].step is False"),
    ("record rank past ranks", edit(lambda ix: rec(ix).update(rank=5)), "records[0].rank is 5"),
    ("record repeated", edit(lambda ix: ix["records"].append(dict(rec(ix)))), "repeats step 0, rank 0"),
    ("record of one rank missing", drop_record(0, 1), "no record of step 0, rank 1"),
    (
        "step 0 missing",
        edit(lambda ix: ix.update(records=[r for r in ix["records"] if r["step"] == 1])),
        "no record of step 0",
    ),
    ("record segments short", edit(lambda ix: rec(ix)["segments"].pop()), "3 segments, the index names 4"),
    ("record segments null", edit(lambda ix: rec(ix).update(segments=None)), "None segments"),
    ("record segment a list", edit(lambda ix: rec(ix)["segments"].__setitem__(0, [])), "segments[0] is []"),
    ("record segment index wrong", edit(lambda ix: rec(ix)["segments"][0].update(segment=3)), "segment is 3"),
    ("bytes a string", edit(lambda ix: rec(ix).update(bytes="228")), "bytes is '228'"),
    ("bytes wrong", edit(lambda ix: rec(ix).update(bytes=rec(ix)["bytes"] + 1)), "the index records"),
    ("sha256 malformed", edit(lambda ix: rec(ix).update(sha256="abc")), "sha256 is 'abc'"),
    (
        "sha256 upper case",
        edit(lambda ix: rec(ix).update(sha256=rec(ix)["sha256"].upper())),
        "64 lower-case hex",
    ),
    ("message changed", flip_message_byte, "SHA-256 differs"),
    # the file names
    ("message missing", lambda d: (d / rec(_index(d))["message"]).unlink(), "no such file"),
    ("message name null", rename_message(None), "is None, expected a file name"),
    ("message name int", rename_message(7), "is 7, expected a file name"),
    ("message name empty", rename_message(""), "is '', expected a file name"),
    ("message ../x", rename_message("../outside/x"), "not a plain file name"),
    ("message ..", rename_message(".."), "not a plain file name"),
    ("message nested", rename_message("sub/x.msg"), "not a plain file name"),
    ("message backslash", rename_message("..\\x"), "not a plain file name"),
    ("message NUL", rename_message("x\0y"), "not a plain file name"),
    ("message /dev/zero", rename_message("/dev/zero"), "not a plain file name"),
    ("message /proc/self/environ", rename_message("/proc/self/environ"), "not a plain file name"),
    ("message link out", lambda d: link_message(str(d.parent / "outside" / "x"))(d), "leads outside"),
    ("message link to /dev/zero", link_message("/dev/zero"), "leads outside"),
    ("message link dangling", link_message("nowhere.msg"), "no such file"),
    ("message a directory", subdir_message, "not a regular file"),
    ("message a FIFO", fifo_message, "not a regular file"),
    ("g missing", lambda d: g_name(d).unlink(), "no such file"),
    ("g ../ outside", outside_copy("g"), "not a plain file name"),
    ("s ../ outside", outside_copy("s"), "not a plain file name"),
    ("g /dev/zero", edit(lambda ix: rec(ix)["segments"][0].update(g="/dev/zero")), "not a plain file name"),
    ("g same file as s", edit(same_g_and_s), "is also records[0].segments[0].g"),
    (
        "g name shared by two records",
        edit(lambda ix: rec(ix, 1)["segments"][0].update(g=rec(ix)["segments"][0]["g"])),
        "is also",
    ),
    (
        "message name is a g file",
        edit(lambda ix: rec(ix).update(message=rec(ix)["segments"][0]["g"])),
        "is also",
    ),
    # the arrays
    ("g truncated", truncate(g_name, 200), "bytes, expected"),
    ("g header only", truncate(g_name, 128), "bytes, expected"),
    ("g empty file", truncate(g_name, 0), "not a readable .npy"),
    ("g not npy", lambda d: g_name(d).write_bytes(b"\0" * 640), "not a readable .npy"),
    (
        "g trailing bytes",
        lambda d: g_name(d).write_bytes(g_name(d).read_bytes() + b"\0\0\0\0"),
        "bytes, expected",
    ),
    ("g float64", save_g(lambda a: a.astype(np.float64)), "float64[128]"),
    ("g float16", save_g(lambda a: a.astype(np.float16)), "float16[128]"),
    ("g int32", save_g(lambda a: a.view(np.int32)), "int32[128]"),
    ("g big-endian", save_g(lambda a: a.astype(">f4")), "expected float32[128]"),
    ("g one longer", save_g(lambda a: np.append(a, np.float32(0))), "[129]"),
    ("g 2-D", save_g(lambda a: a.reshape(2, 64)), "[2, 64]"),
    ("g 0-D", save_g(lambda a: a[0]), "[]"),
    ("g huge header", huge_npy_header, "[1099511627776]"),
    ("g pickled objects", pickled_object_array, "object"),
    ("g NaN", save_g(with_nan), "[1] is nan"),
    ("g -inf", save_g(with_inf), "[0] is -inf"),
    ("g NaN in a later record", save_g(with_nan, i=3, j=2), "records[3].segments[2].g[1] is nan"),
    ("s NaN", save_g(with_nan, key="s"), "segments[0].s[1] is nan"),
    ("s negative", save_g(negative, key="s"), "s must be >= 0"),
    ("s null for vgc", edit(lambda ix: rec(ix)["segments"][0].update(s=None)), "method vgc needs s"),
    ("s given for strom", edit(strom_with_s), "method strom has no s"),
]


@pytest.mark.parametrize("mutate,fragment", [c[1:] for c in BAD_DUMPS], ids=[c[0] for c in BAD_DUMPS])
def test_bad_dump_is_refused_up_front(dump, tmp_path, capsys, monkeypatch, mutate, fragment):
    """The dump is refused in one line before the implementation is loaded; nothing changes."""
    monkeypatch.delenv("VGC_IMPL", raising=False)
    mutate(dump)
    marker = tmp_path / "outside" / "loaded"
    impl = tmp_path / "outside" / "impl.py"
    impl.write_text(f"from vgc_ref import *  # noqa\nopen({str(marker)!r}, 'w').close()\n")
    before = snapshot(tmp_path)
    report = tmp_path / "outside" / "report.json"
    assert_refused(
        *kit(["--replay", str(dump), "--impl", str(impl), "--report", str(report)], capsys), fragment
    )
    assert not marker.exists(), "the implementation was loaded before the dump was checked"
    assert snapshot(tmp_path) == before


BAD_ARGUMENTS = [
    ("empty DIR", lambda d, t: ["--replay", ""], "--replay ''"),
    ("no such DIR", lambda d, t: ["--replay", str(t / "nowhere")], "no such directory"),
    ("DIR a file", lambda d, t: ["--replay", str(t / "outside" / "x")], "not a directory"),
    ("DIR /dev/null", lambda d, t: ["--replay", "/dev/null"], "not a directory"),
    ("DIR /proc", lambda d, t: ["--replay", "/proc"], "cannot read the index"),
    ("DIR without a dump", lambda d, t: ["--replay", str(t / "outside")], "cannot read the index"),
    ("report empty", lambda d, t: ["--replay", str(d), "--report", ""], "--report ''"),
    ("report a directory", lambda d, t: ["--replay", str(d), "--report", str(t)], "is a directory"),
    ("report /dev/null", lambda d, t: ["--replay", str(d), "--report", "/dev/null"], "not a regular file"),
    ("report in /proc", lambda d, t: ["--replay", str(d), "--report", "/proc/r.json"], "--report"),
    (
        "report no such dir",
        lambda d, t: ["--replay", str(d), "--report", str(t / "no" / "r.json")],
        "does not exist",
    ),
    (
        "report is the index",
        lambda d, t: ["--replay", str(d), "--report", str(d / "index.json")],
        "is a file of the dump",
    ),
    (
        "report is a message",
        lambda d, t: ["--replay", str(d), "--report", str(d / "t00000_r000.msg")],
        "is a file of the dump",
    ),
    ("with -k", lambda d, t: ["--replay", str(d), "-k", "step"], "-k: an option of the property suite"),
    (
        "with --max-examples",
        lambda d, t: ["--replay", str(d), "--max-examples", "5"],
        "--max-examples: an option of",
    ),
    ("with --derandomize", lambda d, t: ["--replay", str(d), "--derandomize"], "--derandomize: an option of"),
    ("with pytest args", lambda d, t: ["--replay", str(d), "--", "-x"], "arguments after --: an option of"),
    ("with --list", lambda d, t: ["--replay", str(d), "--list"], "--list and --replay"),
    (
        "impl not importable",
        lambda d, t: ["--replay", str(d), "--impl", "no_such_module_x"],
        "cannot load the implementation",
    ),
    (
        "no such backend",
        lambda d, t: ["--replay", str(d), "--backend", "nope"],
        "cannot load the implementation",
    ),
]


@pytest.mark.parametrize("argv,fragment", [c[1:] for c in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS])
def test_bad_replay_argument_is_refused(dump, tmp_path, capsys, monkeypatch, argv, fragment):
    monkeypatch.delenv("VGC_IMPL", raising=False)
    before = snapshot(tmp_path)
    assert_refused(*kit(argv(dump, tmp_path), capsys), fragment)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------------------
# What a good dump gives: the report, and links that stay inside DIR
# --------------------------------------------------------------------------------------


def test_report_of_an_identical_replay(dump, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VGC_IMPL", raising=False)
    report = tmp_path / "r.json"
    code, out, err = kit(["--replay", str(dump), "--report", str(report)], capsys)
    assert (code, err) == (0, "") and "all 4 messages identical" in out
    doc = json.loads(report.read_text())
    assert doc["kind"] == "replay" and doc["report_version"] == 1 and doc["passed"] is True
    assert doc["impl"] == "vgc_ref" and doc["dump"]["method"] == "vgc" and doc["dump"]["ranks"] == 2
    assert doc["summary"] == {"passed": 4, "failed": 0, "error": 0, "skipped": 0}
    assert [(e["step"], e["rank"]) for e in doc["results"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_report_of_a_difference_names_it_and_skips_the_rest(dump, tmp_path, capsys, monkeypatch):
    """A valid g changed at step 0, rank 1: that record fails, the later ones are not compared."""
    monkeypatch.delenv("VGC_IMPL", raising=False)
    index = _index(dump)
    path = dump / rec(index, 1)["segments"][0]["g"]
    np.save(path, np.full(128, 1.0, np.float32))
    report = tmp_path / "r.json"
    code, out, err = kit(["--replay", str(dump), "--report", str(report)], capsys)
    assert code == 1 and err == ""
    assert "first difference at step 0, rank 1, segment 0 (layer0.W)" in out
    doc = json.loads(report.read_text())
    assert doc["passed"] is False
    assert [e["outcome"] for e in doc["results"]] == ["passed", "failed", "skipped", "skipped"]
    assert doc["results"][1]["segment"] == 0 and "first difference" in doc["results"][1]["message"]


def test_implementation_raising_on_a_valid_dump_is_its_failure(dump, tmp_path, capsys, monkeypatch):
    """Exit 1 (the implementation's fault), named in stdout and the report; not a traceback."""
    monkeypatch.delenv("VGC_IMPL", raising=False)
    impl = tmp_path / "raising_impl.py"
    impl.write_text(
        "from vgc_ref import *  # noqa\ndef vgc_step(state, g, s, params):\n    raise RuntimeError('boom')\n"
    )
    report = tmp_path / "r.json"
    code, out, err = kit(["--replay", str(dump), "--impl", str(impl), "--report", str(report)], capsys)
    assert code == 1 and err == "" and "Traceback" not in out
    assert "step 0, rank 0, segment 0 (layer0.W) the implementation raised RuntimeError: boom" in out
    doc = json.loads(report.read_text())
    assert [e["outcome"] for e in doc["results"]] == ["error", "skipped", "skipped", "skipped"]


def test_a_link_to_a_file_inside_the_dump_is_followed(dump, tmp_path, capsys, monkeypatch):
    """Confinement is about where a name leads: a link within DIR is a file of DIR."""
    monkeypatch.delenv("VGC_IMPL", raising=False)
    index = _index(dump)
    name = rec(index)["message"]
    (dump / name).rename(dump / "renamed.msg")
    (dump / name).symlink_to("renamed.msg")
    code, out, err = kit(["--replay", str(dump)], capsys)
    assert (code, err) == (0, "") and "all 4 messages identical" in out, err


def test_an_interrupted_dump_replays_its_complete_steps(dump, capsys, monkeypatch):
    """An index with fewer steps recorded than planned (the run stopped) replays those."""
    monkeypatch.delenv("VGC_IMPL", raising=False)
    edit(lambda ix: ix.update(steps=5))(dump)
    code, out, err = kit(["--replay", str(dump)], capsys)
    assert (code, err) == (0, "") and "all 4 messages identical" in out


REFUSED_IN_A_PROCESS = ["records empty", "message ../x", "g NaN", "index a JSON list"]


@pytest.mark.parametrize("name", REFUSED_IN_A_PROCESS)
def test_refusal_in_a_real_process(dump, name):
    """The same refusals from a real process: exit status 2, one stderr line, no traceback."""
    mutate, fragment = next(c[1:] for c in BAD_DUMPS if c[0] == name)
    mutate(dump)
    done = subprocess.run(
        [sys.executable, "-m", "vgc_ref.conformance", "--replay", str(dump)],
        cwd=ROOT, env={**os.environ, "NUMBA_NUM_THREADS": "1", "VGC_IMPL": ""}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert_refused(done.returncode, done.stdout, done.stderr, fragment)
