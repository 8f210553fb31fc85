"""VGC in PyTorch training: variance terms from module hooks and a DDP communication hook.

Needs the ``torch`` extra (``pip install 'vgc_ref[torch]'``); ``import vgc_ref`` never
imports torch. In a DDP training script (docs/torch.md)::

    model = torch.nn.parallel.DistributedDataParallel(model)
    hook = vgc_ref.torch.register(model, method="vgc", alpha=2.0)

* :mod:`vgc_ref.torch.variance` -- s for nn.Linear, nn.Conv1d, nn.Conv2d and nn.Embedding,
  in torch ops;
* :mod:`vgc_ref.torch.hook` -- the communication hook, its per-parameter state, the
  exchange of variable-length messages, the commit of a step on every rank or none;
* :mod:`vgc_ref.torch.device` -- the hook's device path: a CUDA bucket's step and
  aggregation in device memory with the numba-cuda backend (docs/torch.md, "On a GPU");
* :mod:`vgc_ref.torch.adapter` -- the hook's step and aggregation as a conformance adapter.
"""

from vgc_ref.torch.hook import HOOK_METHODS, VGCHookState, VGCStepError, register, tensor_as_numpy, vgc_hook
from vgc_ref.torch.variance import VarianceTracker, conv_var, embedding_var, linear_var

__all__ = [
    "HOOK_METHODS",
    "VGCHookState",
    "VGCStepError",
    "VarianceTracker",
    "conv_var",
    "embedding_var",
    "linear_var",
    "register",
    "tensor_as_numpy",
    "vgc_hook",
]
