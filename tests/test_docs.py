"""The docs are self-contained: no reference to a document outside the repository, and
every relative link in README.md and docs/ names a file that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tracked(*patterns: str) -> list[Path]:
    done = subprocess.run(["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True)
    if done.returncode == 0 and done.stdout.strip():
        return [ROOT / line for line in done.stdout.split()]
    return sorted(p for pattern in patterns for p in ROOT.glob(pattern))  # an sdist: no git


def test_no_reference_to_the_outside_semantics_document():
    """The normative text is docs/algorithm.md and docs/format.md: code and docs cite those,
    never "semantics section N" of a document that is not in the repository."""
    outside = re.compile(r"semantics,? sections? \d|" + "shared" + r"/spec|semantics\.md", re.I)
    hits = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in _tracked("*.md", "*.py", "**/*.md", "**/*.py", "**/*.c", "**/*.h")
        if path.is_file()
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if outside.search(line)
    ]
    assert hits == []


def test_relative_links_name_files_that_exist():
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in link.findall(path.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert broken == []


def test_conformance_catalogue_lists_every_property_and_the_table_size():
    """docs/conformance.md's property catalogue has a row for every property of the kit and
    no other, and states the deterministic layer's case count as the table has it."""
    import inspect

    from vgc_ref import conformance
    from vgc_ref.conformance import (
        adapter,
        table,
        test_aggregate,
        test_conv_variance,
        test_encoding,
        test_stateful,
        test_step,
        test_table,
        test_variance,
    )

    modules = (test_step, test_encoding, test_aggregate, test_stateful, test_variance, test_conv_variance)
    properties = {
        name
        for module in (*modules, test_table)
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("test_") and fn.__module__ == module.__name__
    }
    text = (ROOT / "docs" / "conformance.md").read_text()
    catalogue = text.split("## The property catalogue")[1].split("\n## ")[0]
    rows = set(re.findall(r"^\| `(test_\w+)", catalogue, flags=re.M))
    assert rows == properties == set(conformance.PROPERTIES)
    fast = sum(not c.slow for c in table.CASES)
    assert f"{fast:,} hand-picked cases" in text and f"{fast:,} cases (`--list`" in text
    assert len(adapter.OPERATIONS) == 7 and "defines these seven functions" in text


def test_reliability_page_cites_tests_that_exist():
    """docs/reliability.md names each guarantee's test as `tests/FILE.py::NAME`: every one is
    a test function defined in that file, so the page cannot cite a renamed test."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    assert len(cited) >= 20
    missing = [
        f"{path}::{name}"
        for path, name in cited
        if not re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M)
    ]
    assert missing == []
