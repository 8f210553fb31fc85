"""Run by tests/test_cuda_backend.py with VGC_CUDA_TPB=256 on the CUDA simulator.

The GPU's block size (256 threads) with 2 blocks and n = 700 (3 tiles): the block scan
runs over 8 rounds, the grid-stride loops wrap, and a tile is partly past the end.
Compares every operation with the reference bit for bit; prints "TPB 256: all equal".
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from vgc_ref import SegmentState, StromParams, VGCParams, dense_packet
from vgc_ref.backends import get_backend
from vgc_ref.backends import numba_cuda as nc
from vgc_ref.encoding import encode_message

assert nc.SIMULATOR and nc.TPB == 256, (nc.SIMULATOR, nc.TPB)
ref_backend = get_backend("numpy")
rng = np.random.default_rng(4)
n = 700


def same(a, b, what):
    a = np.asarray(a, np.float32).view(np.uint32)
    b = np.asarray(b, np.float32).view(np.uint32)
    assert np.array_equal(a, b), what


messages = []
for rank, params in enumerate([VGCParams(), VGCParams(tau=0.5), StromParams(0.75)]):
    ref = SegmentState.zeros(n)
    dev = nc.DeviceSegmentState.zeros(n)
    for k in range(2):
        g = rng.standard_normal(n).astype(np.float32)
        s = (g * g * rng.uniform(0, 3, n)).astype(np.float32)
        if isinstance(params, StromParams):
            want = ref_backend.strom_step(ref, g, params)
            got = nc.strom_step(dev, cuda.to_device(g), params)
        else:
            want = ref_backend.vgc_step(ref, g, s, params)
            got = nc.vgc_step(dev, cuda.to_device(g), cuda.to_device(s), params)
        assert got == want and 0 < want.count < n, (rank, k, got, want)
        host = dev.to_host()
        same(host.r, ref.r, "r")
        same(host.v, ref.v, "v")
    messages.append(encode_message([want]))
messages.append(encode_message([dense_packet(0, rng.standard_normal(n).astype(np.float32))]))
out = [cuda.to_device(np.zeros(n, np.float32))]
nc.decode_accumulate(messages, [n], out)
same(out[0].copy_to_host(), ref_backend.decode_accumulate(messages, [n])[0], "g_hat")
print("TPB 256: all equal")
