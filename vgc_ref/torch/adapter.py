"""vgc_ref.torch's step and aggregation as a conformance adapter (docs/conformance.md)::

    python -m vgc_ref.conformance --impl vgc_ref.torch.adapter
    VGC_BACKEND=numba-cpu python -m vgc_ref.conformance --impl vgc_ref.torch.adapter

Each operation takes the path the DDP hook takes (:mod:`vgc_ref.torch.hook`):

* ``vgc_step``, ``strom_step`` -- g and s become torch tensors on the arrays' memory (what
  a bucket's gradients are), and the step runs the hook's backend ($VGC_BACKEND, default
  numpy; numba-cpu runs on the tensors' memory) on :func:`~vgc_ref.torch.tensor_as_numpy`
  views of them;
* ``decode_accumulate`` -- the messages are padded into uint8 tensors of the longest length,
  as exchanged by ``all_gather``, cut back to their lengths and averaged in rank order by
  :func:`~vgc_ref.torch.hook.aggregate_gathered` into views of a float32 result tensor;
* ``dense_grad_var`` -- :func:`vgc_ref.torch.variance.linear_grad_var` with ordered products,
  transposed to vgc_ref's [in, out] layout;
* ``conv_grad_var`` -- :func:`vgc_ref.torch.variance.patch_grad_var` (the tracker's
  convolution forms, BLAS products) on the patches transposed to torch's [B, K, L];
* ``encode_message``, ``decode_message`` -- the reference's (the hook encodes with them).

Inputs the hook could never be handed (not float32 1-D arrays, messages that are not bytes,
a malformed layout) go to the backend unchanged, so the errors are the reference's. Inputs
are validated by the backend before anything changes, as for every backend.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from vgc_ref.backends import get_backend
from vgc_ref.encoding import decode_message, encode_message
from vgc_ref.errors import InputError
from vgc_ref.torch.hook import aggregate_gathered, pad_message, tensor_as_numpy
from vgc_ref.torch.variance import linear_grad_var, patch_grad_var
from vgc_ref.variance import CONV_VARIANCE_FORMS, _check_conv_pair, _check_pair

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]


def _through_tensor(a):
    """A writeable float32 1-D array seen as a torch tensor and back: the same memory."""
    if isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 1 and a.flags.writeable:
        return tensor_as_numpy(torch.from_numpy(a))  # on CPU: a view of a's memory
    return a


def vgc_step(state, g, s, params):
    """The hook's VGC step on tensor views of g and s (docs/algorithm.md section 3)."""
    return get_backend().vgc_step(state, _through_tensor(g), _through_tensor(s), params)


def strom_step(state, g, params):
    """The hook's Strom step on a tensor view of g (section 7)."""
    return get_backend().strom_step(state, _through_tensor(g), params)


def _plain_sizes(sizes) -> bool:
    try:
        return all(int(n) == n and 0 <= n for n in sizes)
    except (TypeError, ValueError):
        return False


def decode_accumulate(messages, sizes, out=None):
    """The hook's aggregation of gathered uint8 payloads, in rank order (section 9)."""
    backend = get_backend()
    if not messages or not all(isinstance(m, bytes) for m in messages) or not _plain_sizes(sizes):
        return backend.decode_accumulate(messages, sizes, out)
    lengths = [len(m) for m in messages]
    gathered = [pad_message(m, max(lengths)) for m in messages]
    if out is not None:
        return aggregate_gathered(gathered, lengths, sizes, out, backend)
    result = torch.zeros(int(sum(sizes)), dtype=torch.float32)
    flat = result.numpy()
    bounds = np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))])
    views = [flat[a:b] for a, b in itertools.pairwise(bounds)]
    return aggregate_gathered(gathered, lengths, sizes, views, backend)


def dense_grad_var(x, delta):
    """:func:`~vgc_ref.torch.variance.linear_grad_var` (ordered) in vgc_ref's layout (section 3)."""
    _check_pair(x, delta)
    xt, dt = torch.tensor(x), torch.tensor(delta)  # copies: the inputs stay untouched
    g_w, s_w, g_b, s_b = linear_grad_var(xt, dt, products="ordered")
    return g_w.T.contiguous().numpy(), s_w.T.contiguous().numpy(), g_b.numpy(), s_b.numpy()


def conv_grad_var(patches, delta, form="exact"):
    """:func:`~vgc_ref.torch.variance.patch_grad_var` (ordered) in vgc_ref's layout (docs/algorithm.md 2.1).

    The inputs are checked by the reference's own checks first, so errors are its errors.
    """
    _check_conv_pair(patches, delta)
    if form not in CONV_VARIANCE_FORMS:
        raise InputError("form", form, f"must be one of {', '.join(CONV_VARIANCE_FORMS)}")
    cols = torch.tensor(patches).transpose(1, 2)  # [B, K, P]
    d = torch.tensor(delta).transpose(1, 2)  # [B, out, P]
    g_w, s_w, g_b, s_b = patch_grad_var(cols, d, form, products="ordered")
    return g_w.T.contiguous().numpy(), s_w.T.contiguous().numpy(), g_b.numpy(), s_b.numpy()
