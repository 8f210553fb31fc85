"""What a user installing from the sdist gets: every file README.md and docs/ link to, the
examples, the tests and golden files the docs cite; and a CHANGELOG whose newest release is
the package's version."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from vgc_ref import __version__

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.fixture(scope="module")
def sdist_names(tmp_path_factory) -> set[str]:
    if not (ROOT / "pyproject.toml").exists() or not (ROOT / "MANIFEST.in").exists():
        pytest.skip("not a checkout (no pyproject.toml or MANIFEST.in)")
    out = tmp_path_factory.mktemp("sdist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (archive,) = out.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        prefix = f"vgc_ref-{__version__}/"
        return {m.name.removeprefix(prefix) for m in tar.getmembers() if m.isfile()}


def test_sdist_holds_every_linked_file(sdist_names):
    """Every relative link of README.md, docs/*.md and the examples' READMEs resolves
    inside the sdist (a link to a folder: some file under it)."""
    missing = []
    for page in [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *(ROOT / "examples").glob("**/README.md"),
    ]:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            rel = (page.parent / target).resolve().relative_to(ROOT).as_posix()
            if rel not in sdist_names and not any(n.startswith(rel + "/") for n in sdist_names):
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert missing == []


def test_sdist_holds_docs_examples_and_the_makefile(sdist_names):
    tracked = subprocess.run(
        ["git", "ls-files", "docs", "examples"], cwd=ROOT, capture_output=True, text=True
    )
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    wanted = {line for line in tracked.stdout.splitlines() if not line.endswith(".gitignore")}
    assert wanted - sdist_names == set()
    assert {"Makefile", "CHANGELOG.md", "README.md", "LICENSE", "mpi_demo/mnist1d.npz"} <= sdist_names
    assert not any("__pycache__" in n or n.startswith("examples/c/build/") for n in sdist_names)


def test_changelog_newest_release_is_the_package_version():
    """The newest released section of CHANGELOG.md is this version, with its tag."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[?(\d+\.\d+\.\d+)\]? - (\d{4}-\d{2}-\d{2}) \(tag `v\1`\)$", text, re.M)
    assert releases, "CHANGELOG.md has no '## X.Y.Z - YYYY-MM-DD (tag `vX.Y.Z`)' section"
    assert releases[0][0] == __version__


def test_readme_setup_times_are_the_recorded_ones():
    """README.md's table of what each command installs and how long it takes is what
    tools/setup_times.py renders from docs/results/setup-times.json: measured, not typed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("setup_times", ROOT / "tools" / "setup_times.py")
    setup_times = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_times)
    doc = json.loads(setup_times.JSON.read_text())
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert setup_times.readme_block(readme) == setup_times.render(doc)
    assert any(r["target"] == "demo" and r["exit"] == 0 for r in doc["runs"])
