"""VGC in PyTorch training: variance terms from module hooks.

Needs the ``torch`` extra (``pip install 'vgc_ref[torch]'``); ``import vgc_ref`` never
imports torch.

* :mod:`vgc_ref.torch.variance` -- s for nn.Linear, nn.Conv1d and nn.Conv2d, in torch ops.
"""

from vgc_ref.torch.variance import VarianceTracker, conv_var, linear_var

__all__ = ["VarianceTracker", "conv_var", "linear_var"]
