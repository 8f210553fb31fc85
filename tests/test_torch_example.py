"""examples/ddp_mnist1d.py's command line: --help and --version answer without loading torch.

These run without torch installed (they are the point: the answer comes before torch is
imported); the training itself is tested in tests/test_torch_ddp.py under torchrun.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ddp_mnist1d.py"

#: Runs the example as __main__ with the given arguments, then prints whether torch was loaded.
PROBE = """
import runpy, sys
sys.argv = [{path!r}, *{args!r}]
try:
    runpy.run_path({path!r}, run_name="__main__")
finally:
    print("torch loaded:", "torch" in sys.modules, file=sys.stderr)
"""


def _example(*args: str) -> subprocess.CompletedProcess:
    code = PROBE.format(path=str(EXAMPLE), args=list(args))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_shows_defaults_without_importing_torch():
    """--help exits 0, lists every option with its default, and never imports torch."""
    proc = _example("--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch loaded: False" in proc.stderr
    for text in ("--alpha", "(default: 2.0)", "(default: 0.999)", "(default: vgc)", "--warmup-steps"):
        assert text in proc.stdout, text


def test_version_answers_without_importing_torch():
    """--version prints the program and vgc_ref's version, exit 0, without torch."""
    import vgc_ref

    proc = _example("--version")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"ddp_mnist1d.py (vgc_ref {vgc_ref.__version__})"
    assert "torch loaded: False" in proc.stderr


@pytest.mark.parametrize("args", [["--alpha", "two"], ["--method", "topk"], ["--no-such"]])
def test_a_wrong_argument_is_one_line_and_exit_2(args):
    """A wrong argument: one line on stderr naming it, exit status 2, torch never loaded."""
    proc = _example(*args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("torch loaded")]
    assert len(lines) == 1 and lines[0].startswith("ddp_mnist1d.py: error:"), proc.stderr
    assert "torch loaded: False" in proc.stderr
