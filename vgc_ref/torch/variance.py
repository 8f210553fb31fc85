"""Variance terms s of nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding in torch ops (docs/algorithm.md 2).

For the mean loss L = (1/B) sum_z l_z over a mini-batch of B samples, VGC needs per
parameter the uncentered variance term ``s = (1/B^2) sum_z grad(l_z)^2``. Every formula
here is written with D = dL/dy, the gradient of the loss *as the training script computes
it*, whose row z already carries the factor 1/B of the mean (docs/algorithm.md section 2).
So the batch size the loss is averaged over enters through D and needs no argument: a
loss averaged over B gives s of that mean; a loss divided once more by k (gradient
accumulation over k micro-batches) gives s of the mean over all k*B samples once the k
micro-batches' terms are added, which :class:`VarianceTracker` does.

nn.Linear (``y = x W^T + b``, torch's weight is [out, in]; vgc_ref.variance's is [in, out])::

    s_W[o, i] = sum_z D[z, o]^2 x[z, i]^2          s_b[o] = sum_z D[z, o]^2

exactly :func:`vgc_ref.variance.dense_var` transposed. With ``products="ordered"`` the sums
run over z = 0 .. B-1 from +0.0 with every product and addition rounded on its own (eager
PyTorch fuses nothing), the fixed order of docs/algorithm.md section 2, so on CPU float32
the result equals vgc_ref's bit for bit; ``products="blas"`` (the default) is one matrix
product, faster and equal to float32 rounding error only. Inputs with more than two
dimensions ([B, T, in]: a sequence) are per-sample sums over T: the exact form
``s_W = sum_z (D_z^T x_z)^2`` with batched products.

nn.Conv1d and nn.Conv2d, with X_z the im2col patches of sample z ([in*k, L], L output
positions) and D_z its [out, L] output gradient, per-sample weight gradient G_z = D_z X_z^T:

* ``exact``:  s_W = sum_z (D_z X_z^T)^2,   s_b = sum_z (sum_l D_z[:, l])^2
  -- one batched product and B*out*in*k floats of memory;
* ``approx``: s_W = sum_z (D_z o D_z)(X_z o X_z)^T,   s_b = sum_{z,l} D_z[:, l]^2
  -- every output position counted as a sample: one extra backward-filter product.

These are the forms of :func:`vgc_ref.variance.conv_var` (docs/algorithm.md section 2.1),
with BLAS products: equal to it to float32 rounding, not bit for bit. By the Cauchy-Schwarz
inequality the exact term is at most L times the approximate one, and the two are equal
when L = 1. Only ``groups=1`` and ``padding_mode="zeros"`` are
supported; other convolutions raise :class:`~vgc_ref.errors.InputError`.

nn.Embedding (weight [V, dim], rows looked up by integer indices idx[z, t]): sample z's
gradient of row i is the sum of D[z, t] over its positions with idx[z, t] = i, so

    s_W[i] = sum_z (sum_{t: idx[z,t] = i} D[z, t])^2

exactly, by :func:`embedding_var` (two scatter-adds, no [B, V, dim] tensor).

Every term is float32, also for float16 and bfloat16 parameters (x and D are cast up).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from vgc_ref.errors import InputError

PRODUCTS = ("blas", "ordered")
CONV_FORMS = ("exact", "approx")
SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)


def _check_products(products: str) -> None:
    if products not in PRODUCTS:
        raise InputError("products", repr(products), f"must be one of {PRODUCTS}")


def _check_pair(x: torch.Tensor, delta: torch.Tensor) -> None:
    for name, a in (("x", x), ("delta", delta)):
        if not isinstance(a, torch.Tensor):
            raise InputError(name, type(a).__name__, "must be a torch.Tensor")
        if a.dtype != torch.float32:
            raise InputError(name, f"dtype {a.dtype}", "must have dtype torch.float32")
        if a.ndim < 2:
            raise InputError(name, f"shape {tuple(a.shape)}", "must have a batch and a feature dimension")
    if x.shape[:-1] != delta.shape[:-1]:
        raise InputError(
            "delta", f"shape {tuple(delta.shape)}", f"must match x's leading dimensions {tuple(x.shape[:-1])}"
        )
    if x.shape[0] == 0:
        raise InputError("x", f"shape {tuple(x.shape)}", "needs at least one sample")


def _ordered_sum_of_outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_z outer(a[z], b[z])`` with z = 0 .. B-1 added in order from +0.0 (float32).

    a: [B, m], b: [B, n] -> [m, n]. Every product and every addition is one eager torch
    operation, rounded on its own: the order of :func:`vgc_ref.portable.matmul_tn`.
    """
    acc = torch.zeros(a.shape[1], b.shape[1], dtype=a.dtype, device=a.device)  # +0.0
    for z in range(a.shape[0]):
        acc = acc + a[z][:, None] * b[z][None, :]
    return acc


def _ordered_column_sums(a: torch.Tensor) -> torch.Tensor:
    """``sum_z a[z]`` in order from +0.0, as :func:`vgc_ref.portable.column_sums`."""
    acc = torch.zeros(a.shape[1], dtype=a.dtype, device=a.device)
    for z in range(a.shape[0]):
        acc = acc + a[z]
    return acc


def linear_var(
    x: torch.Tensor, delta: torch.Tensor, products: str = "blas"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Variance term of an nn.Linear's weight and bias, in torch's [out, in] layout.

    Parameters
    ----------
    x : torch.Tensor
        float32[B, in] (or [B, ..., in]: per-sample sums over the middle dimensions).
    delta : torch.Tensor
        float32[B, out] (or [B, ..., out]), D = dL/dy of the loss (it carries 1/B).
    products : {"blas", "ordered"}
        "ordered" sums over samples in the fixed order of docs/algorithm.md section 2
        (2-D inputs only): bit-identical to ``vgc_ref.variance.dense_var(x, D)`` transposed.

    Returns
    -------
    s_W : float32[out, in]
    s_b : float32[out]
    """
    _check_products(products)
    _check_pair(x, delta)
    if x.ndim > 2:
        if products == "ordered":
            raise InputError("products", "'ordered'", "is defined for 2-D (batch, features) inputs only")
        xs = x.reshape(x.shape[0], -1, x.shape[-1])  # [B, T, in]
        ds = delta.reshape(delta.shape[0], -1, delta.shape[-1])  # [B, T, out]
        g = torch.bmm(ds.transpose(1, 2), xs)  # [B, out, in] per-sample gradients (times 1/B)
        gb = ds.sum(dim=1)  # [B, out]
        return (g * g).sum(dim=0), (gb * gb).sum(dim=0)
    x2 = x * x  # float32[B, in]
    d2 = delta * delta  # float32[B, out]
    if products == "ordered":
        return _ordered_sum_of_outer(d2, x2), _ordered_column_sums(d2)
    return d2.T @ x2, d2.sum(dim=0)


def linear_grad_var(
    x: torch.Tensor, delta: torch.Tensor, products: str = "blas"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """g and s of an nn.Linear's weight and bias from x and D, in torch's [out, in] layout.

    The twin of :func:`vgc_ref.variance.dense_grad_var` (whose weight is [in, out]): with
    ``products="ordered"`` on CPU float32 every result equals it (transposed) bit for bit.
    In training, autograd computes g; this is for checking (the conformance adapter).

    Returns
    -------
    g_W, s_W : float32[out, in]
    g_b, s_b : float32[out]
    """
    s_w, s_b = linear_var(x, delta, products)
    if products == "ordered":
        return _ordered_sum_of_outer(delta, x), s_w, _ordered_column_sums(delta), s_b
    if x.ndim > 2:
        xs, ds = x.reshape(-1, x.shape[-1]), delta.reshape(-1, delta.shape[-1])
        return ds.T @ xs, s_w, ds.sum(dim=0), s_b
    return delta.T @ x, s_w, delta.sum(dim=0), s_b


def _patches(module: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """im2col of ``x`` for ``module``: float32[B, in*k, L] in the weight's flattening order."""
    if module.groups != 1:
        raise InputError("groups", module.groups, "only groups=1 convolutions are supported")
    if module.padding_mode != "zeros":
        raise InputError("padding_mode", repr(module.padding_mode), "only 'zeros' is supported")
    if isinstance(module.padding, str):
        raise InputError("padding", repr(module.padding), "give the padding as integers")
    if isinstance(module, nn.Conv1d):
        x4 = x.unsqueeze(2)  # [B, in, 1, T]
        kernel, dilation = (1, module.kernel_size[0]), (1, module.dilation[0])
        padding, stride = (0, module.padding[0]), (1, module.stride[0])
    else:
        x4 = x
        kernel, dilation, padding, stride = module.kernel_size, module.dilation, module.padding, module.stride
    return nn.functional.unfold(x4, kernel, dilation=dilation, padding=padding, stride=stride)


def conv_var(
    module: nn.Conv1d | nn.Conv2d, x: torch.Tensor, delta: torch.Tensor, form: str = "exact"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Variance term of a convolution's weight and bias, in the weight's own shape.

    Parameters
    ----------
    module : nn.Conv1d or nn.Conv2d
        The layer (its kernel size, stride, padding and dilation).
    x : torch.Tensor
        float32[B, in, T] (Conv1d) or [B, in, H, W] (Conv2d), the layer's input.
    delta : torch.Tensor
        float32 output gradient of the same batch, D = dL/dy (it carries 1/B).
    form : {"exact", "approx"}
        See the module docstring.

    Returns
    -------
    s_W : float32, the weight's shape
    s_b : float32[out]
    """
    if form not in CONV_FORMS:
        raise InputError("form", repr(form), f"must be one of {CONV_FORMS}")
    for name, a in (("x", x), ("delta", delta)):
        if not isinstance(a, torch.Tensor) or a.dtype != torch.float32:
            raise InputError(name, getattr(a, "dtype", type(a).__name__), "must be a float32 torch.Tensor")
    cols = _patches(module, x)  # [B, in*k, L]
    d = delta.reshape(delta.shape[0], delta.shape[1], -1)  # [B, out, L]
    if d.shape[2] != cols.shape[2] or d.shape[0] != cols.shape[0]:
        got = f"shape {tuple(delta.shape)}"
        raise InputError("delta", got, f"must have {cols.shape[2]} output positions")
    s_w, s_b = patch_var(cols, d, form)
    return s_w.reshape(module.weight.shape), s_b


def patch_var(
    cols: torch.Tensor, d: torch.Tensor, form: str = "exact", products: str = "blas"
) -> tuple[torch.Tensor, torch.Tensor]:
    """s of a convolution from its patches: cols float32[B, K, L], D float32[B, out, L].

    Returns s_W: float32[out, K] (the weight flattened as torch's [out, in, k...]) and
    s_b: float32[out]; ``form`` as in the module docstring. With ``products="ordered"`` the
    sums follow the fixed order of docs/algorithm.md section 2.1 (rows b-major then p, each
    sample's positions and the samples in increasing order, every operation rounded on its
    own), so on CPU float32 every result equals :func:`vgc_ref.variance.conv_var`
    (transposed) bit for bit; "blas" lets torch choose (faster, outside that contract).
    """
    _check_products(products)
    if products == "ordered":
        b, k, length = cols.shape
        if form == "exact":
            s_w = torch.zeros(d.shape[1], k, dtype=d.dtype, device=d.device)
            s_b = torch.zeros(d.shape[1], dtype=d.dtype, device=d.device)
            for i in range(b):
                g = _ordered_sum_of_outer(d[i].T, cols[i].T)  # [out, K], positions in order
                e = _ordered_column_sums(d[i].T)
                s_w = s_w + g * g
                s_b = s_b + e * e
            return s_w, s_b
        rows_d = (d * d).transpose(1, 2).reshape(b * length, -1)  # [B*L, out], b-major
        rows_x = (cols * cols).transpose(1, 2).reshape(b * length, k)
        return _ordered_sum_of_outer(rows_d, rows_x), _ordered_column_sums(rows_d)
    if form == "exact":
        g = torch.bmm(d, cols.transpose(1, 2))  # [B, out, K] per-sample gradients (times 1/B)
        gb = d.sum(dim=2)  # [B, out]
        return (g * g).sum(dim=0), (gb * gb).sum(dim=0)
    d2 = d * d
    return torch.einsum("bol,bil->oi", d2, cols * cols), d2.sum(dim=(0, 2))


def patch_grad_var(
    cols: torch.Tensor, d: torch.Tensor, form: str = "exact", products: str = "blas"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """g_W, s_W, g_b, s_b of a convolution from its patches (for checking; autograd gives g).

    The torch twin of :func:`vgc_ref.variance.conv_grad_var`, in torch's layout: cols
    float32[B, K, L], D float32[B, out, L]; g_W and s_W float32[out, K]; ``products`` as in
    :func:`patch_var` ("ordered": bit for bit the reference's).
    """
    s_w, s_b = patch_var(cols, d, form, products)
    if products == "ordered":
        b, k, length = cols.shape
        rows_d = d.transpose(1, 2).reshape(b * length, -1)
        return (
            _ordered_sum_of_outer(rows_d, cols.transpose(1, 2).reshape(b * length, k)),
            s_w,
            (_ordered_column_sums(rows_d)),
            s_b,
        )
    return torch.einsum("bol,bil->oi", d, cols), s_w, d.sum(dim=(0, 2)), s_b


def embedding_var(module: nn.Embedding, idx: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Variance term of an nn.Embedding's weight: its own per-sample term, exactly.

    Sample z's gradient of row i is the sum of D over the positions t where idx[z, t] = i,
    so ``s[i] = sum_z (sum_{t: idx[z,t] = i} D[z, t])^2`` -- one scatter-add of D into the
    (sample, row) pairs that occur, squared, and one into the rows: O(B*T*dim) work and
    memory, never a [B, V, dim] tensor. Rows no sample uses get 0, as does ``padding_idx``
    (its gradient is 0); with ``scale_grad_by_freq`` every gradient of row i is divided by
    i's count in the batch, so its term by the count squared.

    Parameters
    ----------
    module : nn.Embedding
        The layer (num_embeddings, padding_idx, scale_grad_by_freq).
    idx : torch.Tensor
        int64[B, ...] indices, the layer's input (a sample per entry of dimension 0).
    delta : torch.Tensor
        float32[B, ..., dim], D = dL/dy (it carries 1/B).

    Returns
    -------
    s : float32[num_embeddings, dim]
    """
    if idx.dtype not in (torch.int64, torch.int32) or idx.ndim < 1 or idx.shape[0] == 0:
        raise InputError("idx", f"{idx.dtype} {tuple(idx.shape)}", "must be integer indices [B, ...], B > 0")
    if delta.dtype != torch.float32 or tuple(delta.shape) != (*idx.shape, module.embedding_dim):
        got = f"{delta.dtype} {tuple(delta.shape)}"
        raise InputError("delta", got, f"must be float32 of shape {(*idx.shape, module.embedding_dim)}")
    b, n_rows, dim = idx.shape[0], module.num_embeddings, module.embedding_dim
    rows = idx.reshape(b, -1).long()  # [B, T]
    d = delta.reshape(-1, dim)  # [B*T, dim]
    keys = (torch.arange(b, device=idx.device)[:, None] * n_rows + rows).reshape(-1)  # (sample, row)
    pairs, which = torch.unique(keys, return_inverse=True)
    g = torch.zeros(pairs.shape[0], dim, dtype=d.dtype, device=d.device).index_add_(0, which, d)
    s = torch.zeros(n_rows, dim, dtype=d.dtype, device=d.device).index_add_(0, pairs % n_rows, g * g)
    if module.scale_grad_by_freq:
        count = torch.bincount(rows.reshape(-1), minlength=n_rows).clamp(min=1).to(d.dtype)
        s = s / (count * count)[:, None]
    if module.padding_idx is not None:
        s[module.padding_idx] = 0.0
    return s


class VarianceTracker:
    """Module hooks that compute s for every parameter of the supported layers.

    A forward hook on each nn.Linear, nn.Conv1d, nn.Conv2d and nn.Embedding registers a hook on the
    layer's output tensor; when backward reaches that output (before the layer's own
    backward runs, hence before its weight gradient is accumulated and before DDP's
    communication hook can see it), the hook computes s from the saved input and D and
    *adds* it to the parameter's term. Adding makes gradient accumulation exact (the
    micro-batches' terms sum to the full batch's) and counts a layer used twice in one
    forward as two samples (an approximation). :meth:`pop` hands a term over and clears it.

    Parameters
    ----------
    model : nn.Module
        The model (for DDP, ``ddp_model.module``).
    conv : {"exact", "approx"}
        Form of the convolutions' term.
    products : {"blas", "ordered"}
        Products of nn.Linear's term (see :func:`linear_var`).
    """

    def __init__(self, model: nn.Module, conv: str = "exact", products: str = "blas") -> None:
        if conv not in CONV_FORMS:
            raise InputError("conv", repr(conv), f"must be one of {CONV_FORMS}")
        _check_products(products)
        self.conv = conv
        self.products = products
        self.names: dict[torch.Tensor, str] = {}  # tracked parameter -> qualified name
        self._s: dict[torch.Tensor, torch.Tensor] = {}  # parameter -> accumulated s (weight's shape)
        # parameter -> the exception its term raised in backward, raised again by pop(): an
        # error inside autograd would stop this rank's backward alone and leave the others
        # waiting in a collective; deferred to the DDP hook, every rank learns of it.
        self._errors: dict[torch.Tensor, BaseException] = {}
        self._handles = []
        layers = [(name, m) for name, m in model.named_modules() if isinstance(m, SUPPORTED)]
        for mname, module in layers:  # every layer checked before any hook is registered
            if isinstance(module, nn.Conv1d | nn.Conv2d):
                self._check_conv(module, mname)
            if isinstance(module, nn.Embedding) and module.sparse:
                raise InputError(mname or "model", "nn.Embedding(sparse=True)", "DDP's buckets are dense")
        for mname, module in layers:
            for pname, p in module.named_parameters(recurse=False):
                self.names[p] = f"{mname}.{pname}" if mname else pname
            self._handles.append(module.register_forward_hook(self._forward_hook))

    @staticmethod
    def _check_conv(module: nn.Module, name: str) -> None:
        if module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise InputError(
                name or "model",
                f"groups={module.groups}, padding={module.padding!r}, padding_mode={module.padding_mode!r}",
                "conv variance needs groups=1, integer padding and padding_mode='zeros'",
            )

    def tracks(self, p: torch.Tensor) -> bool:
        """Whether ``p`` belongs to a supported layer."""
        return p in self.names

    def _add(self, p: torch.Tensor | None, s: torch.Tensor) -> None:
        if p is None or not p.requires_grad:
            return
        s = s.to(torch.float32)  # float32 also for float16/bfloat16 parameters (docs/torch.md)
        prev = self._s.get(p)
        self._s[p] = s if prev is None else prev + s

    def _forward_hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not (torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad):
            return
        x = inputs[0].detach()

        def on_grad(delta: torch.Tensor) -> None:
            try:
                df = delta.detach().float()  # autocast, half types: float32 terms
                if isinstance(module, nn.Embedding):
                    self._add(module.weight, embedding_var(module, x, df))
                    return
                xf = x.float()
                if isinstance(module, nn.Linear):
                    s_w, s_b = linear_var(xf, df, self.products)
                else:
                    s_w, s_b = conv_var(module, xf, df, self.conv)
                self._add(module.weight, s_w)
                self._add(module.bias, s_b)
            except Exception as exc:  # raised by pop(), in the DDP hook
                for p in (module.weight, module.bias):
                    if p is not None:
                        self._errors[p] = exc

        output.register_hook(on_grad)

    def pop(self, p: torch.Tensor) -> torch.Tensor | None:
        """The term accumulated for ``p`` since the last pop (None if there is none).

        Raises the exception computing the term raised in backward, if it did.
        """
        error = self._errors.pop(p, None)
        if error is not None:
            self._s.pop(p, None)
            raise error
        return self._s.pop(p, None)

    def clear(self) -> None:
        """Forget every accumulated term (and every deferred error)."""
        self._s.clear()
        self._errors.clear()

    def remove(self) -> None:
        """Remove the module hooks."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def parameters(self) -> Iterable[torch.Tensor]:
        """The tracked parameters."""
        return iter(self.names)
