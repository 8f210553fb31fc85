"""examples/c: the C11 port written from docs/ alone passes both routes of the kit.

Skipped, with the reason, where no C compiler is found (``cc`` or ``$CC``). The port is an
example and a proof that the docs suffice, not a backend: it is built here with the flags
of its Makefile, run through the golden vectors (its own driver writes ``out/``) and
through the conformance kit (a ctypes adapter), and built once more with contraction on to
show that the documented flags are what keeps it exact.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PORT = ROOT / "examples" / "c"
CC = os.environ.get("CC", "cc")

pytestmark = pytest.mark.skipif(
    shutil.which(CC) is None or shutil.which("make") is None,
    reason=f"no C compiler ({CC}) or make: the C port's routes are skipped",
)


def _make(tmp_path, *targets, **variables):
    args = ["make", "-s", "-C", str(PORT), f"BUILD={tmp_path / 'build'}", f"PYTHON={sys.executable}"]
    args += [f"{k}={v}" for k, v in variables.items()]
    done = subprocess.run([*args, *targets], capture_output=True, text=True, timeout=900)
    return done, done.stdout + done.stderr


def test_selftest_and_golden_vectors(tmp_path):
    """format.md's worked examples in C alone, then every golden-vector case, max_index too."""
    done, out = _make(tmp_path, "all", "selftest", "check", VECTORS=tmp_path / "vectors")
    assert done.returncode == 0, out[-4000:]
    assert "all selftest checks ok" in out and "all cases match" in out
    assert not re.search(r"^FAIL", out, flags=re.M)
    # examples/c/README.md states the counts of this export: they are checked, not typed.
    import json

    cases = json.loads((tmp_path / "vectors" / "index.json").read_text())["cases"]
    calls = sum(c["kind"] == "calls" for c in cases)
    readme = (PORT / "README.md").read_text()
    assert f"{len(cases):,} cases, {calls:,} of them of kind `calls`" in " ".join(readme.split()), (
        len(cases),
        calls,
    )


def test_conformance_kit_and_table(tmp_path):
    """Every property of the kit (derandomized) and every case of the deterministic layer
    pass through the ctypes adapter, with no operation missing or borrowed."""
    done, out = _make(tmp_path, "kit", "table")
    assert done.returncode == 0, out[-4000:]
    assert re.search(r"vgc_c_adapter: \d+ passed, 0 failed, 0 errors, 0 skipped", out), out[-2000:]
    assert re.search(r"vgc_c_adapter: (\d+) passed, 0 failed of \1 cases", out), out[-2000:]
    assert "is not defined in" not in out and "is the reference's" not in out


def _has_fma() -> bool:
    try:
        return " fma " in f" {Path('/proc/cpuinfo').read_text().replace(chr(10), ' ')} "
    except OSError:
        return False


@pytest.mark.skipif(not _has_fma(), reason="this CPU has no FMA: contraction cannot change a result")
def test_contraction_breaks_the_port(tmp_path):
    """Built with -march=native -ffp-contract=fast (what GNU C does without the Makefile's
    -ffp-contract=off), the port fails the deterministic layer's no-FMA cases."""
    flags = "-std=c11 -O2 -march=native -ffp-contract=fast"
    done, out = _make(tmp_path, "table", CFLAGS=flags)
    assert done.returncode != 0
    assert "bits_no_fma" in out, out[-3000:]
