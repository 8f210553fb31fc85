"""The golden vectors of kind ``calls`` (docs/conformance.md, "Cases" and "File layout"):
the deterministic layer's cases written as plain values, for ports in any language.

They are derived, not written by hand, so these tests check the derivation: every case of
the table is a vector or named Python-only with a reason; every numbered rule of the docs
that has a case has a vector; the reference and the fast backends reproduce every vector;
``check`` compares the exact file set; and every error object the vectors demand is
documented (the reverse of the numbered-rule check: the kit asserts nothing docs/ does not
say).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from vgc_ref import vectors
from vgc_ref.conformance import record, table

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: The kinds of argument that only a Python caller can pass, and so only the Python kit
#: checks (docs/conformance.md, "What only the Python kit checks").
PYTHON_ONLY_KINDS = ("(argument types)", "(out arrays, buffer or array kinds)", "(size)", "slow (n = 2^27)")


@pytest.fixture(scope="module")
def table_values():
    return vectors.table_values()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("vectors")
    names = vectors.export(root)
    return root, [n for n in names if n != "max_index"]


def test_every_table_case_is_a_vector_or_named_python_only(table_values):
    exported, python_only = table_values
    ids = [c.id for c in table.CASES]
    assert not set(exported) & set(python_only)
    assert set(exported) | set(python_only) == set(ids)
    for case_id, why in python_only.items():
        assert any(kind in why for kind in PYTHON_ONLY_KINDS), f"{case_id}: {why}"
    # Most of the table is values: a change that made, say, every step Python-only would
    # silently empty the vectors.
    assert len(exported) > 0.9 * len(ids), (len(exported), len(ids))
    ops = {call[0]["op"] for _, calls in exported.values() for call in calls}
    assert ops == set(record.SIGNATURES)


def test_every_rule_with_a_case_has_a_vector(table_values):
    """A rule of the docs that the kit pins by a case is pinned by a golden vector too."""
    exported, _ = table_values
    # Rules whose only table case cannot be a vector, and the vector that holds them.
    elsewhere = {"decision:1": "max_index", "accept:g.largest": "max_index"}
    # Rows of the acceptance table that only a Python caller can break: argument types,
    # buffers, out arrays, a default argument (docs/conformance.md, "What only the Python
    # kit checks"). Exactly these have no vector.
    python_rows = {
        "reject:g.not_an_array", "reject:g.dtype", "reject:data.other", "reject:messages.entry",
        "reject:out.count", "reject:out.array", "reject:packets.not_a_packet", "reject:packets.words",
        "reject:x.array", "accept:patches.default_form",
    }  # fmt: skip
    missing = []
    for rule in table.doc_rules(DOCS):
        if rule in table.NOT_IN_PROTOCOL:
            continue
        cases = [c.id for c in table.CASES if rule in c.rules]
        assert cases, f"{rule}: no case of the table"
        if not any(c in exported for c in cases) and rule not in elsewhere:
            missing.append(rule)
    assert set(missing) == python_rows, f"rules with a kit case and no golden vector: {missing}"
    assert "max_index" in vectors.step_cases()


@pytest.mark.parametrize("impl", ["vgc_ref", "backend:numba-cpu"])
def test_reference_and_fast_backend_reproduce_every_vector(exported, impl, capsys):
    root, names = exported
    assert vectors.run_impl(root, impl, names) == 0
    assert vectors.check(root, names) == 0
    assert capsys.readouterr().out.rstrip().endswith("all cases match")


def _call_case(root: Path, *, error: bool) -> str:
    """A calls case of the export whose first call raised (or returned)."""
    for path in sorted(root.glob("*/expected/call0/result.json")):
        has_state = (path.parent / "r.f32").exists()
        if json.loads(path.read_text())["ok"] is not error and has_state:
            return path.parents[2].name
    raise AssertionError("no such case")


def test_check_compares_every_file_and_the_exact_file_set(exported, capsys):
    root, _ = exported
    rejected, accepted = _call_case(root, error=True), _call_case(root, error=False)
    cases = [rejected, accepted]
    assert vectors.run_impl(root, "vgc_ref", cases) == 0
    assert vectors.check(root, cases) == 0

    extra = root / accepted / "out" / "call0" / "stray.f32"
    extra.write_bytes(b"\0\0\0\0")
    assert vectors.check(root, cases) == 1
    assert "stray.f32: not expected" in capsys.readouterr().out
    extra.unlink()

    result = root / rejected / "out" / "call0" / "result.json"
    doc = json.loads(result.read_text())
    attribute = next(k for k in doc if k not in ("ok", "error"))
    del doc[attribute]
    result.write_text(json.dumps(doc))
    assert vectors.check(root, cases) == 1
    assert f"{rejected}: call0/result.json" in capsys.readouterr().out

    state = root / accepted / "out" / "call0" / "r.f32"
    data = bytearray(state.read_bytes())
    data[0] ^= 1
    state.write_bytes(bytes(data))
    assert vectors.check(root, cases) == 1
    assert "call0/r.f32: element 0" in capsys.readouterr().out

    shutil.rmtree(root / accepted / "out")
    assert vectors.check(root, cases) == 1


def _error_table() -> dict[str, set[str]]:
    """Error class -> the attributes docs/conformance.md's error table names for it."""
    text = (DOCS / "conformance.md").read_text()
    rows = text.split("| situation | exception")[1].split("\n\n")[0].splitlines()[2:]
    allowed: dict[str, set[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for cls in re.findall(r"`(\w+Error)`", cells[1]):
            allowed.setdefault(cls, set()).update(re.findall(r"`(\w+)`", cells[2]))
    return allowed


def test_every_error_object_is_documented(exported):
    """The reverse of the rule check: every error class, attribute and value that a vector
    demands is written in docs/ (conformance.md's error table and "Which error wins";
    format.md's byte tables for a FormatError's field)."""
    root, _ = exported
    allowed = _error_table()
    conformance = (DOCS / "conformance.md").read_text()
    fmt = (DOCS / "format.md").read_text()
    seen = set()
    for path in root.glob("*/expected/call*/result.json"):
        doc = json.loads(path.read_text())
        if doc["ok"]:
            continue
        cls = doc["error"]
        where = path.relative_to(root)
        assert cls in allowed, f"{where}: {cls} is not in the error table of docs/conformance.md"
        for attr in set(doc) - {"ok", "error"}:
            assert attr in allowed[cls], f"{where}: {cls}.{attr} is not named for {cls} in the error table"
        if "name" in doc:
            name = re.sub(r"\[\d+\]", "[j]", doc["name"], count=1)
            name = re.sub(r"\[\d+\]", "[i]", name)
            short = name.split("]", 1)[1] if name.startswith("packets[j]") else None
            documented = f'"{name}"' in conformance or (short and f'"{short}"' in conformance)
            assert documented, f"{where}: the name {doc['name']!r} ({name}) is not in docs/conformance.md"
        if "field" in doc:
            assert f"`{doc['field']}`" in fmt, f"{where}: field {doc['field']!r} is not in docs/format.md"
        seen.add(cls)
    assert {"InputError", "NonFiniteError", "FormatError", "SegmentMismatchError"} <= seen


def test_toolchain_table_cites_vectors_that_exist(exported):
    """docs/algorithm.md's per-toolchain table names the vectors that show each departure."""
    root, _ = exported
    text = (DOCS / "algorithm.md").read_text()
    paragraph = text.split("The golden vectors find every one of these departures")[1].split("\n\n")[0]
    cited = re.findall(r"`([\w.*]+)`", paragraph)
    assert len(cited) >= 8
    for name in cited:
        assert list(root.glob(name)), f"docs/algorithm.md cites {name}, a vector export does not write"


def test_docs_give_the_python_only_counts(table_values):
    _, python_only = table_values
    text = " ".join((DOCS / "conformance.md").read_text().split())
    kinds = {"argument types": 0, "out arrays": 0, "2^27": 0}
    for why in python_only.values():
        key = "2^27"
        if "(argument types)" in why:
            key = "argument types"
        elif "out arrays" in why:
            key = "out arrays"
        kinds[key] += 1
    total = len(python_only)
    cases = f"{len(table.CASES):,}"
    assert f"{total} of the table's {cases} cases (the slow one included) have no `calls` vector" in text, (
        "docs/conformance.md: the count of Python-only table cases"
    )
    assert f"{kinds['argument types']} pass an argument of the wrong type" in text
    assert f"{kinds['out arrays']} hand `decode_accumulate` `out` arrays" in text
    assert f"{kinds['2^27']} need a segment of 2^27 elements" in text
