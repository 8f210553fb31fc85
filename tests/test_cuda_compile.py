"""Every CUDA kernel compiles for real GPUs, with clean arithmetic, without a GPU.

``python -m vgc_ref.backends.cuda_check`` (a subprocess: the CUDA simulator must be off
there, and this test process has it on) compiles every kernel of
:mod:`vgc_ref.backends.cuda_kernels` with the launch sites' argument types to PTX for
sm_80 and sm_90, assembles it with ptxas and disassembles it with nvdisasm, on Numba's
built-in ``numba.cuda`` and on NVIDIA's ``numba-cuda``. The kernels' results are all
bit-exact parts of the protocol, so every kernel must be free of contractable float
operations, FMA (but for the correctly rounded division's own sequence), float64 and
flush-to-zero. Control kernels built to break each rule show that the checks catch it.

Needs the CUDA toolkit (libNVVM and ptxas; found through CUDA_HOME or /usr/local/cuda)
and, for the SASS half, nvdisasm (the ``nvidia-cuda-nvdisasm`` wheel of the test extra
on Linux x86-64); numba-cuda also needs NVRTC (the ``cuda`` extra). The numba-cuda target
runs in this interpreter when numba-cuda is installed here, else in the one that
``$VGC_CUDA_CHECK_PYTHON`` names (``make test`` builds it: ``.venv-cuda``). Each missing
piece skips what needs it, with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vgc_ref.backends.cuda_check import toolkit_tool

ROOT = Path(__file__).resolve().parents[1]
KERNELS = [
    "reset_kernel",
    "scan_kernel",
    "vgc_write_kernel",
    "strom_write_kernel",
    "offsets_kernel",
    "gather_kernel",
    "decode_kernel",
    "dense_grad_var_kernel",
    "bias_grad_var_kernel",
]
TARGETS = ["builtin", "numba-cuda"]
#: An interpreter with numba-cuda installed, for the numba-cuda target (`make test` sets it).
CHECK_PYTHON = "VGC_CUDA_CHECK_PYTHON"
CCS = ["80", "90"]


def _nvvm_missing() -> str | None:
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and any(Path(root).glob("**/libnvvm.so*")):
            return None
    return "libNVVM not found (set CUDA_HOME to a CUDA toolkit)"


_RESULTS: dict[tuple[str, str], dict] = {}


def _check(target: str, cc: str, tmp_path_factory) -> dict:
    """Run the checker once per (target, cc); its report.json, or skip with the reason."""
    if (target, cc) in _RESULTS:
        return _RESULTS[target, cc]
    if toolkit_tool("ptxas") is None:
        pytest.skip("CUDA toolkit not found (no ptxas in $CUDA_HOME/bin, /usr/local/cuda/bin or PATH)")
    missing = _nvvm_missing()
    if missing:
        pytest.skip(missing)
    python = sys.executable
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    env.pop("VGC_CUDA_TPB", None)
    if target == "numba-cuda":
        # numba-cuda replaces numba.cuda for the whole interpreter (its simulator included),
        # so `make test` installs it into a venv of its own and names that interpreter here.
        other = os.environ.get(CHECK_PYTHON)
        if other:
            python = other
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        elif importlib.util.find_spec("numba_cuda") is None:
            pytest.skip(f"numba-cuda is not installed (pip install -e '.[cuda]', or set ${CHECK_PYTHON})")
    out = tmp_path_factory.mktemp(f"cuda-{target}-sm{cc}")
    cmd = [
        python,
        "-m",
        "vgc_ref.backends.cuda_check",
        "--cc",
        cc,
        "--target",
        target,
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    report_file = out / "report.json"
    if target == "numba-cuda" and "nvrtc" in proc.stderr.lower() and not report_file.exists():
        pytest.skip("numba-cuda needs NVRTC to compile (pip install nvidia-cuda-nvrtc, or the cuda extra)")
    assert report_file.exists(), f"the checker failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    report = json.loads(report_file.read_text())
    report["stdout"] = proc.stdout
    report["returncode"] = proc.returncode
    _RESULTS[target, cc] = report
    return report


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("target", TARGETS)
def test_every_kernel_compiles_to_ptx_and_assembles(target, cc, tmp_path_factory):
    """All kernels compile with the launch sites' types and ptxas assembles each one."""
    report = _check(target, cc, tmp_path_factory)
    expected = "Built-in" if target == "builtin" else "NVIDIA"
    assert report["implementation"] == expected
    assert sorted(k for k in report["kernels"] if k != "division_probe") == sorted(KERNELS)
    for name in KERNELS:
        assert report["kernels"][name]["ptx_lines"] > 0
        assert report["kernels"][name]["cubin_bytes"] > 0, name


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("target", TARGETS)
def test_no_kernel_has_contractable_ops_fma_float64_or_ftz(target, cc, tmp_path_factory):
    """The PTX and SASS rules of cuda_check hold for every kernel (findings listed on failure)."""
    report = _check(target, cc, tmp_path_factory)
    assert report["findings"] == [], "\n".join(report["findings"])
    assert report["returncode"] == 0, report["stdout"]


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("target", TARGETS)
def test_the_checks_flag_kernels_built_to_break_them(target, cc, tmp_path_factory):
    """Controls: a * b + c with plain operators (FMA), a float64 product, fastmath (FTZ)."""
    report = _check(target, cc, tmp_path_factory)
    controls = report["controls"]
    assert any("PTX fma" in f for f in controls["contractable"])
    assert any("PTX float64" in f for f in controls["float64"])
    assert any("PTX flush to zero" in f for f in controls["ftz"])
    if report["nvdisasm"] is None:
        pytest.skip("nvdisasm not found: the SASS half was not checked (pip install nvidia-cuda-nvdisasm)")
    assert any("SASS has 1 FFMA" in f for f in controls["contractable"])
    assert any("SASS float64" in f for f in controls["float64"])
    assert any("SASS flush to zero" in f for f in controls["ftz"])


@pytest.mark.parametrize("cc", CCS)
def test_sass_was_checked_where_nvdisasm_is_installed(cc, tmp_path_factory):
    """With nvdisasm present, every kernel has a SASS listing and the division its FFMA only."""
    report = _check("builtin", cc, tmp_path_factory)
    if report["nvdisasm"] is None:
        pytest.skip("nvdisasm not found: no SASS listing (pip install nvidia-cuda-nvdisasm)")
    kernels = report["kernels"]
    assert all("ffma" in kernels[name] for name in KERNELS)
    assert kernels["division_probe"]["ffma"] > 0  # ptxas's division sequence uses FFMA
    assert kernels["decode_kernel"]["ffma"] <= kernels["division_probe"]["ffma"]
    assert all(kernels[name]["ffma"] == 0 for name in KERNELS if name != "decode_kernel")
