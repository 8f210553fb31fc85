"""vgc_ref.torch beyond nn.Linear and convolutions: normalisation layers, embeddings, half types.

The DDP jobs run tests/torch_ddp_worker.py (scenarios ``resnet`` and ``half``) on 2 gloo
processes in a subprocess under a timeout.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="vgc_ref.torch needs the torch extra (pip install -e '.[torch]')")

from torch import nn  # noqa: E402

import vgc_ref  # noqa: E402
import vgc_ref.torch as vt  # noqa: E402
from vgc_ref.torch.variance import embedding_var  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import torch_ddp_worker as job  # noqa: E402

TIMEOUT = 240  # seconds for one 2-process job (about 10 s on a loaded 2-core machine)


def _job(scenario: str, tmp_path: Path) -> list:
    proc = job.launch(scenario, tmp_path, TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return job.results(tmp_path)


def _identical(replicas) -> bool:
    return all(np.array_equal(a.view(np.uint32), b.view(np.uint32)) for a, b in replicas)


def test_resnet_with_batchnorm_trains_under_the_default_hook(tmp_path):
    """A small torchvision-style ResNet (conv, BatchNorm2d, ReLU, residual add, average pooling,
    linear) trains under register(ddp) with no extra argument on 2 processes: the loss falls
    to less than half, both ranks hold bit-identical parameters after every step, the
    BatchNorm parameters (and only they) are the dense ones, and the rest is compressed."""
    ranks = _job("resnet", tmp_path)
    for rank in range(2):
        losses = ranks[rank]["losses"]
        assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses
        for step, replicas in enumerate(ranks[rank]["replicas"]):
            assert _identical([replicas]), step
    model = job.make_resnet()
    norms = {name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    want = sorted(name for name, _ in model.named_parameters() if name.rsplit(".", 1)[0] in norms)
    assert len(want) == 12 and ranks[0]["dense"] == want
    stats = ranks[0]["stats"]
    assert stats["steps"] == job.RESNET_STEPS and stats["sent"] < stats["elements"]


def test_half_models_train_with_float32_compression(tmp_path):
    """bfloat16 and float16 models train under the hook on 2 processes: their gradients stay in
    their dtype, the loss falls, both ranks hold identical parameters after every step, and
    the step compresses (fewer elements sent than held)."""
    ranks = _job("half", tmp_path)
    for dtype in ("torch.bfloat16", "torch.float16"):
        run = ranks[0][dtype]
        assert run["dtypes"] == [dtype]
        assert run["losses"][-1] < run["losses"][0], run["losses"]
        for replicas in run["replicas"]:
            assert _identical([replicas])
        assert run["stats"]["sent"] < run["stats"]["elements"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_bucket_is_compressed_in_float32(dtype):
    """The hook's step on half gradients equals the float32 step on the same values cast up
    (the message bit for bit), and the variance terms of half parameters are float32."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).to(dtype)
    state = vt.VGCHookState(model, "vgc", alpha=1.0)
    model(torch.randn(5, 4).to(dtype)).float().sum().backward()
    params = list(model.parameters())
    terms = [state.tracker._s[p].clone() for p in params]
    assert all(s.dtype == torch.float32 for s in terms)
    grads = [p.grad for p in params]
    message, sizes = state.compress(params, grads)
    comp = vgc_ref.Compressor(sizes, "vgc", alpha=1.0)
    want = comp.message(
        [g.float().reshape(-1).numpy() for g in grads], [s.reshape(-1).numpy() for s in terms]
    )
    assert message == want


def _per_sample_embedding_term(module: nn.Embedding, idx: torch.Tensor, delta: torch.Tensor):
    """s from explicit per-sample gradients in float64: sum_z grad_z^2, one sample at a time."""
    s = torch.zeros(module.num_embeddings, module.embedding_dim, dtype=torch.float64)
    for z in range(idx.shape[0]):
        w = module.weight.detach().double().clone().requires_grad_(True)
        out = nn.functional.embedding(
            idx[z : z + 1], w, padding_idx=module.padding_idx, scale_grad_by_freq=module.scale_grad_by_freq
        )
        (out * delta[z : z + 1].double()).sum().backward()
        s += w.grad**2
    return s


@pytest.mark.parametrize(
    "options", [{}, {"padding_idx": 0}, {"scale_grad_by_freq": True}], ids=["plain", "padding", "freq"]
)
def test_embedding_term_is_the_per_sample_term(options):
    """embedding_var equals sum_z grad(l_z)^2 from explicit per-sample gradients (rows used
    several times in a sample, unused rows, padding_idx), to float32 rounding; with
    scale_grad_by_freq the count is the whole batch's, as torch scales the batch gradient."""
    torch.manual_seed(4)
    module = nn.Embedding(7, 3, **options)
    idx = torch.tensor([[1, 2, 1, 0], [3, 3, 3, 6], [0, 1, 5, 5]])
    delta = torch.randn(3, 4, 3)
    got = embedding_var(module, idx, delta)
    if options.get("scale_grad_by_freq"):  # torch divides by the count in the whole batch
        count = torch.bincount(idx.reshape(-1), minlength=7).clamp(min=1).double()
        want = torch.zeros(7, 3, dtype=torch.float64)
        total = torch.zeros(7, 3, dtype=torch.float64)
        for z in range(3):
            g = (
                torch.zeros(7, 3, dtype=torch.float64).index_add_(0, idx[z], delta[z].double())
                / count[:, None]
            )
            want += g**2
            total += g
        w = module.weight.detach().double().requires_grad_(True)  # the per-sample split adds up
        (nn.functional.embedding(idx, w, scale_grad_by_freq=True) * delta.double()).sum().backward()
        torch.testing.assert_close(total, w.grad)
    else:
        want = _per_sample_embedding_term(module, idx, delta)
    assert got.dtype == torch.float32 and got.shape == (7, 3)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=0)
    assert not got[4].any()  # a row no sample uses
    if "padding_idx" in options:
        assert not got[0].any()


def test_embedding_is_tracked_through_backward():
    """An nn.Embedding in a model gets its term from the tracker during backward (the loss's
    1/B carried by D), equal to embedding_var of the same D."""
    torch.manual_seed(5)
    emb = nn.Embedding(9, 4)
    head = nn.Linear(4, 2)
    tracker = vt.VarianceTracker(nn.ModuleList([emb, head]))
    idx = torch.randint(0, 9, (6, 3))
    out = emb(idx)
    out.retain_grad()
    head(out).mean(dim=1).pow(2).mean().backward()
    assert torch.equal(tracker.pop(emb.weight), embedding_var(emb, idx, out.grad))


def test_sparse_embedding_is_refused():
    """A sparse embedding cannot be in DDP's dense buckets: refused with the layer named."""
    with pytest.raises(vgc_ref.InputError, match="sparse"):
        vt.VarianceTracker(nn.ModuleDict({"emb": nn.Embedding(4, 2, sparse=True)}))


def test_a_term_that_fails_in_backward_is_raised_by_pop():
    """An exception computing a term in backward does not stop backward (which would leave
    the other ranks waiting in a collective): pop() raises it, for the hook to report."""
    module = nn.Conv1d(1, 2, 3)
    tracker = vt.VarianceTracker(nn.Sequential(module))
    module.padding_mode = "circular"  # unsupported after registration: conv_var raises in backward
    module(torch.randn(2, 1, 5)).sum().backward()
    assert module.weight.grad is not None
    with pytest.raises(vgc_ref.InputError, match="padding_mode"):
        tracker.pop(module.weight)
    assert tracker.pop(module.weight) is None
