"""The hook's device path: a bucket's step and aggregation in device memory (docs/torch.md, "On a GPU").

When a bucket is a CUDA tensor and the numba-cuda backend runs, :mod:`vgc_ref.torch.hook`
takes this path instead of copying the bucket to the host:

* g (the bucket's float32 gradients) and s (the tracker's terms, computed by torch on the
  GPU) are handed to the numba-cuda kernels as Numba device arrays **on the tensors' own
  memory** (``numba.cuda.as_cuda_array``, the ``__cuda_array_interface__``): no copy;
* r and v live in device memory, one
  :class:`~vgc_ref.backends.numba_cuda.DeviceSegmentState` per piece of a parameter, with
  a **spare** beside it: a step copies r and v into the spare (device to device) and
  steps the spare; committing a step swaps the two, aborting it leaves the committed
  state as it was (the transaction of the hook's step 8, without a host copy);
* the aggregation writes g_hat straight into device views of the result tensor.

What crosses to the host is what the numba-cuda backend's API gives back today: the
packets' words (each step copies them back, and the hook encodes the message on the
host), the gathered messages (the backend decodes headers on the host and uploads the
words for its accumulate kernel), the message lengths and the success flags. Gradients,
s, r, v and g_hat never do. A DENSE packet (an untracked parameter, ``method="none"``) is
the gradient itself, so its values are part of the message.

**The stream rule.** torch runs its ops on its current stream, Numba its kernels and
copies on its own default stream. :func:`to_numba` waits for torch's current stream
before Numba reads or writes torch's memory; :func:`to_torch` waits for Numba before torch
uses what Numba wrote. Every step of the numba-cuda backend ends with a host copy of its
flags, so its results are complete when it returns; the waits cost the overlap of one
bucket's step with backward, and are the simple and correct choice. Numba's calls run in
the bucket's device context (:func:`kernels`): the aggregation runs on the collective's
callback thread, where Numba would otherwise take device 0.

**Status:** written and tested without a GPU (below); the GPU tests of
tests/test_torch_device.py have not yet run on one.

**Simulating it.** Without a GPU, Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) runs
the same kernels on host memory. ``device_path="simulate"`` sends CPU buckets through this
path: :func:`device_view` wraps a CPU tensor's memory in the simulator's device array (no
copy), so everything above -- the device states and their spares, the commit by swapping,
g_hat written into views of the result -- runs on CPU tensors, with the simulator's
kernels (slow: tiny models only). That is how tests/test_torch_device.py checks this path
without a GPU.
"""

from __future__ import annotations

import os
import threading

import torch

from vgc_ref.state import SegmentState

#: ``device_path`` values of :class:`~vgc_ref.torch.VGCHookState`.
DEVICE_PATHS = ("auto", "host", "simulate")


def simulator_on() -> bool:
    """Whether Numba's CUDA simulator is on (read the way Numba reads it: at its import)."""
    try:
        from numba import config
    except ImportError:  # pragma: no cover - numba is a dependency
        return False
    return bool(config.ENABLE_CUDASIM)


def numba_cuda():
    """The numba-cuda backend module (ImportError without a GPU and without the simulator)."""
    from vgc_ref.backends import numba_cuda as nc

    return nc


def gpu_available() -> bool:
    """Whether the numba-cuda backend runs on a real GPU here (not the simulator)."""
    if simulator_on() or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        numba_cuda()
    except ImportError:
        return False
    return True


def device_view(t: torch.Tensor):
    """A 1-D Numba device array on ``t``'s own memory (no copy).

    A CUDA tensor through ``numba.cuda.as_cuda_array``; on the simulator, a CPU tensor
    through the simulator's device array over its memory. ``t`` must be contiguous (a
    bucket's gradients and views of it are); keep ``t`` alive while the view is used.
    """
    flat = t.detach().reshape(-1)
    if not flat.is_contiguous() or (flat.data_ptr() != t.data_ptr() and t.numel()):
        raise ValueError("device_view needs a contiguous tensor (reshape copied it)")
    if flat.is_cuda:
        from numba import cuda

        return cuda.as_cuda_array(flat)
    if not simulator_on():
        raise ValueError("a CPU tensor is a device array only on Numba's CUDA simulator")
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    return FakeCUDAArray(flat.numpy())


#: Serialises the simulator's kernels (see :func:`kernels`); re-entrant, as a step nests them.
_SIMULATOR_LOCK = threading.RLock()


def kernels(device: torch.device):
    """A context for Numba's work (kernels, copies, allocations) for a bucket on ``device``.

    On a GPU: Numba's context of that device made current on this thread
    (``numba.cuda.gpus[i]``), since the aggregation runs on the collective's callback
    thread and Numba would otherwise take device 0 there. On the simulator (a CPU
    ``device``): a lock, since the step (the thread of backward) and another bucket's
    aggregation (the callback thread) may launch kernels at once, which a GPU takes and
    the simulator refuses.
    """
    if device.type == "cpu":
        return _SIMULATOR_LOCK
    from numba import cuda

    return cuda.gpus[device.index if device.index is not None else torch.cuda.current_device()]


def to_host(x):
    """A host (numpy) copy of a device array, or of a numpy array (for the hook's record)."""
    return x.copy_to_host() if hasattr(x, "copy_to_host") else x.copy()


def to_numba(device: torch.device) -> None:
    """The stream rule, torch to Numba: wait for torch's current stream on ``device``."""
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()


def to_torch(device: torch.device) -> None:
    """The stream rule, Numba to torch: wait for Numba's work on the device."""
    if device.type == "cuda":
        from numba import cuda

        with kernels(device):
            cuda.synchronize()


class DeviceParamState:
    """One parameter's r and v in device memory, one piece per segment, with spares.

    ``states`` are the committed :class:`DeviceSegmentState` objects; ``spares`` the same
    number of device buffers the next step runs on. Why spares: a step must not touch the
    committed state until every rank has succeeded (the hook's step 8); stepping a device
    copy kept from step to step costs one device-to-device copy of r and v per step and
    no allocation (a DeviceSegmentState allocates its workspace when made).
    """

    def __init__(self, host_states: list[SegmentState], device: torch.device) -> None:
        nc = numba_cuda()
        self.device = device  # the parameter's: whose Numba context holds r and v
        with kernels(device):
            self.states = [nc.DeviceSegmentState.from_host(st) for st in host_states]
        self.spares: list | None = None

    def scratch(self) -> list:
        """The spares, holding copies of the committed r and v (device to device)."""
        with kernels(self.device):
            if self.spares is None:
                nc = numba_cuda()
                self.spares = [nc.DeviceSegmentState.zeros(st.n) for st in self.states]
            for spare, st in zip(self.spares, self.states):
                if st.n:
                    spare.r.copy_to_device(st.r)
                    spare.v.copy_to_device(st.v)
        return self.spares

    def commit(self, stepped: list) -> None:
        """Make ``stepped`` (the spares a step ran on) the committed state; the old one the spares."""
        old = self.states
        self.states = stepped
        self.spares = old

    def host_states(self) -> list[SegmentState]:
        """Host copies of the committed pieces (a checkpoint)."""
        with kernels(self.device):
            return [st.to_host() for st in self.states]

    def load(self, host_states: list[SegmentState]) -> None:
        """Copy validated host pieces into the committed device state."""
        with kernels(self.device):
            for st, new in zip(self.states, host_states):
                if st.n:
                    st.r.copy_to_device(new.r)
                    st.v.copy_to_device(new.v)
