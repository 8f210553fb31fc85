"""vgc_ref.torch's variance terms against vgc_ref.variance and explicit per-sample gradients."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch", reason="vgc_ref.torch needs the torch extra (pip install -e '.[torch]')")

from torch import nn  # noqa: E402

from vgc_ref import InputError, dense_var  # noqa: E402
from vgc_ref.torch import VarianceTracker, conv_var, linear_var  # noqa: E402

finite32 = st.floats(-1e3, 1e3, width=32, allow_subnormal=True)


@st.composite
def batches(draw, max_batch=9, max_features=7):
    """x: float32[B, in] and D: float32[B, out], values drawn element by element (ties, zeros, subnormals)."""
    b = draw(st.integers(1, max_batch), label="B")
    n_in = draw(st.integers(1, max_features), label="in")
    n_out = draw(st.integers(1, max_features), label="out")
    x = np.array(draw(st.lists(finite32, min_size=b * n_in, max_size=b * n_in), label="x"), np.float32)
    d = np.array(draw(st.lists(finite32, min_size=b * n_out, max_size=b * n_out), label="D"), np.float32)
    return x.reshape(b, n_in), d.reshape(b, n_out)


@given(batches())
def test_ordered_linear_variance_is_bit_identical_to_dense_var(pair):
    """products="ordered" on CPU float32 sums in vgc_ref's fixed order: s_W equals
    dense_var's transposed and s_b equals dense_var's, bit for bit."""
    x, d = pair
    ref_w, ref_b = dense_var(x, d)  # float32[in, out], float32[out]
    s_w, s_b = linear_var(torch.from_numpy(x), torch.from_numpy(d), products="ordered")
    assert s_w.dtype == torch.float32 and tuple(s_w.shape) == (d.shape[1], x.shape[1])
    np.testing.assert_array_equal(s_w.numpy().view(np.uint32), ref_w.T.view(np.uint32))
    np.testing.assert_array_equal(s_b.numpy().view(np.uint32), ref_b.view(np.uint32))


@given(st.integers(1, 12), st.integers(1, 8), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_blas_linear_variance_agrees_with_ordered_to_rounding(batch, n_in, n_out, seed):
    """products="blas" sums the same non-negative terms in another order: the results agree
    to B float32 roundings of the sum (all terms are >= 0, so the sum bounds the error)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_in, generator=g)
    d = torch.randn(batch, n_out, generator=g) / batch
    for fast, exact in zip(linear_var(x, d, "blas"), linear_var(x, d, "ordered")):
        tol = 2 * batch * torch.finfo(torch.float32).eps * exact + 1e-38
        assert torch.all((fast - exact).abs() <= tol)


def _per_sample_terms(module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """s of every parameter from explicit per-sample gradients, in float64.

    The loss is the mean over B samples of sum(y_z * c) with a fixed random c, so D carries 1/B
    as in training; grad(l_z) is the gradient of the z-th term alone.
    """
    m64 = module.double()
    x64 = x.double()
    batch = x.shape[0]
    c = torch.randn_like(m64(x64[:1]))
    terms = [torch.zeros_like(p) for p in m64.parameters()]
    for z in range(batch):
        m64.zero_grad()
        (m64(x64[z : z + 1]) * c).sum().backward()
        for t, p in zip(terms, m64.parameters()):
            t += p.grad**2  # grad(l_z)^2
    module.float()
    return [t / batch**2 for t in terms], c.float()


@pytest.mark.parametrize(
    "module, shape",
    [
        (nn.Linear(5, 3), (7, 5)),
        (nn.Linear(4, 2), (3, 6, 4)),  # a sequence: [B, T, in]
        (nn.Conv1d(3, 4, 5, stride=2, padding=1), (6, 3, 17)),
        (nn.Conv1d(2, 3, 3, dilation=2), (4, 2, 12)),
        (nn.Conv2d(2, 3, (3, 2), stride=(1, 2), padding=(1, 0)), (5, 2, 6, 7)),
    ],
    ids=["linear", "linear-seq", "conv1d-stride-pad", "conv1d-dilation", "conv2d"],
)
def test_tracker_exact_terms_equal_per_sample_gradients(module, shape):
    """The tracker's s (exact forms) equals (1/B^2) sum_z grad(l_z)^2 from explicit per-sample
    gradients in float64, to float32 rounding (the batched products sum in BLAS's order)."""
    torch.manual_seed(0)
    x = torch.randn(*shape)
    expected, c = _per_sample_terms(module, x)
    tracker = VarianceTracker(module, conv="exact")
    (module(x) * c).sum().div(shape[0]).backward()
    for p, want in zip(module.parameters(), expected):
        got = tracker.pop(p)
        assert got is not None and got.shape == p.shape
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-12)
        assert tracker.pop(p) is None  # handed over once


@pytest.mark.parametrize("cls, shape", [(nn.Conv1d, (4, 3, 11)), (nn.Conv2d, (3, 3, 5, 6))])
def test_conv_approx_is_the_positions_as_samples_form_and_bounds_exact(cls, shape):
    """approx = sum over samples and output positions of (x*x)(D*D), computed here in float64
    from the definition; and exact <= L * approx elementwise (Cauchy-Schwarz), with equality
    of the two forms at L = 1."""
    torch.manual_seed(1)
    module = cls(3, 2, 3)
    x = torch.randn(*shape)
    y = module(x)
    d = torch.randn_like(y) / shape[0]
    s_exact, b_exact = conv_var(module, x, d, "exact")
    s_approx, b_approx = conv_var(module, x, d, "approx")
    positions = y[0, 0].numel()
    # Definition, float64: every (sample, position) contributes (patch value * D)^2.
    x64, d64 = x.double(), d.double()
    want = torch.zeros_like(module.weight, dtype=torch.float64)
    for idx in np.ndindex(*y.shape[2:]):
        window = tuple(slice(i, i + k) for i, k in zip(idx, module.kernel_size))
        patch = x64[(slice(None), slice(None), *window)]  # [B, in, k...]
        dd = d64[(slice(None), slice(None), *idx)]  # [B, out]
        want += torch.einsum("bo,bi...->oi...", dd**2, patch**2)
    torch.testing.assert_close(s_approx.double(), want, rtol=1e-5, atol=1e-12)
    torch.testing.assert_close(b_approx.double(), (d64**2).sum(dim=tuple(i for i in range(d.ndim) if i != 1)))
    assert torch.all(s_exact <= positions * s_approx * (1 + 1e-5))
    assert torch.all(b_exact <= positions * b_approx * (1 + 1e-5))
    one = cls(3, 2, shape[2:] if cls is nn.Conv2d else shape[2])  # kernel = input: L = 1
    y1 = one(x)
    d1 = torch.randn_like(y1)
    torch.testing.assert_close(conv_var(one, x, d1, "exact")[0], conv_var(one, x, d1, "approx")[0])


def test_tracker_sums_micro_batches_to_the_full_batch_term():
    """Gradient accumulation: k backward passes of loss/k add up to s of the mean loss over
    all k*B samples (what one backward over the concatenated batch gives)."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    tracker = VarianceTracker(model)
    nn.functional.cross_entropy(model(x), y).backward()
    whole = {p: tracker.pop(p) for p in model.parameters()}
    for half in (slice(0, 4), slice(4, 8)):
        (nn.functional.cross_entropy(model(x[half]), y[half]) / 2).backward()
    for p in model.parameters():
        torch.testing.assert_close(tracker.pop(p), whole[p], rtol=1e-5, atol=1e-10)


def test_tracker_ignores_forwards_without_grad_and_removes_its_hooks():
    """No term for a forward under no_grad; after remove() nothing is tracked."""
    model = nn.Linear(3, 2)
    tracker = VarianceTracker(model)
    with torch.no_grad():
        model(torch.randn(2, 3))
    assert tracker.pop(model.weight) is None
    tracker.remove()
    model(torch.randn(2, 3)).sum().backward()
    assert tracker.pop(model.weight) is None


def test_bad_inputs_raise_specific_errors():
    """Wrong dtype, mismatched batch, unknown options and unsupported convolutions name the field."""
    with pytest.raises(InputError, match="dtype"):
        linear_var(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 1))
    with pytest.raises(InputError, match="leading dimensions"):
        linear_var(torch.zeros(2, 3), torch.zeros(3, 1))
    with pytest.raises(InputError, match="products"):
        linear_var(torch.zeros(2, 3), torch.zeros(2, 1), products="fast")
    model = nn.Sequential(nn.Linear(4, 4), nn.Unflatten(1, (4, 1)), nn.Conv1d(4, 4, 1, groups=2))
    with pytest.raises(InputError, match="groups"):
        VarianceTracker(model)
    assert not model[0]._forward_hooks  # nothing registered on the layers before the bad one
    with pytest.raises(InputError, match="conv"):
        VarianceTracker(nn.Linear(2, 2), conv="fast")


@pytest.mark.parametrize("form", ["exact", "approx"])
@given(
    st.integers(1, 6),  # B
    st.integers(1, 3),  # in channels
    st.integers(1, 4),  # out channels
    st.sampled_from([(5, 2, 2), (3, 2, 1), (3, 1, 0), (1, 1, 0)]),  # kernel, stride, padding
    st.integers(5, 16),  # length
    st.integers(0, 2**32 - 1),  # seed
)
def test_conv1d_terms_equal_vgc_ref_conv_var(form, batch, c_in, c_out, geometry, length, seed):
    """Conv1d's term equals vgc_ref.variance.conv_var on the same patches and D (channels last,
    W as [kernel*C_in, C_out]) to float32 rounding: both sum the same non-negative terms
    (exact: squared per-sample products) but BLAS's products sum over positions in their own
    order, so equality is to a few ulps, not bit for bit."""
    from vgc_ref.variance import conv_var as ref_conv_var
    from vgc_ref.variance import im2col1d

    kernel, stride, padding = geometry
    g = torch.Generator().manual_seed(seed)
    module = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding)
    x = torch.randn(batch, c_in, length, generator=g)
    positions = (length + 2 * padding - kernel) // stride + 1
    d = torch.randn(batch, c_out, positions, generator=g) / batch
    s_w, s_b = conv_var(module, x, d, form)
    cols = im2col1d(x.transpose(1, 2).contiguous().numpy(), kernel, stride, padding)  # [B, P, k*C_in]
    ref_w, ref_b = ref_conv_var(cols, d.transpose(1, 2).contiguous().numpy(), form)  # [k*C_in, out]
    ref_w = torch.from_numpy(ref_w.reshape(kernel, c_in, c_out).transpose(2, 1, 0).copy())
    torch.testing.assert_close(s_w, ref_w, rtol=1e-5, atol=1e-30)
    torch.testing.assert_close(s_b, torch.from_numpy(ref_b), rtol=1e-5, atol=1e-30)
