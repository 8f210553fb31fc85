"""The conformance kit certifies vgc_ref.torch's step and aggregation (vgc_ref.torch.adapter)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="vgc_ref.torch needs the torch extra (pip install -e '.[torch]')")

from vgc_ref.torch import tensor_as_numpy  # noqa: E402


def _kit(backend: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vgc_ref.conformance", "--impl", "vgc_ref.torch.adapter"]
    cmd += ["--derandomize", "--max-examples", "10", "--no-shrink"]
    env = dict(os.environ, VGC_BACKEND=backend, NUMBA_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba-cpu", marks=pytest.mark.slow)])
def test_kit_passes_the_torch_adapter(backend):
    """Every property of the kit passes the adapter bit for bit (exit status 0, nothing failed,
    nothing skipped), with the hook's default backend and with numba-cpu on tensor memory."""
    proc = _kit(backend)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert "0 failed, 0 errors, 0 skipped" in proc.stdout, tail


def test_cpu_float32_tensor_is_not_copied():
    """tensor_as_numpy of a contiguous float32 CPU tensor is a view: a write shows in the tensor
    (so numba-cpu's kernels run on the gradient's own memory); a float64 tensor is not viewed
    as float32 and keeps its dtype, so the step rejects it."""
    t = torch.zeros(5)
    a = tensor_as_numpy(t)
    a[3] = 7.0
    assert t[3].item() == 7.0 and a.dtype == np.float32
    assert tensor_as_numpy(torch.zeros(2, 3, dtype=torch.float64)).dtype == np.float64
