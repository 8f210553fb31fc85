"""The demo's CNN on MNIST-1D: gradients, the convolution variance, traces, checkpoints.

The data set is the stored file mpi_demo/mnist1d.npz (tests/test_mnist1d_data.py); nothing
here needs the optional ``mnist1d`` package.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from numeric import central_differences

from mpi_demo import cnn, model, network, trace
from mpi_demo.config import ConfigError, TrainConfig
from mpi_demo.train import RankFailureError, run_training
from vgc_ref.variance import conv_grad_var

#: A tiny CNN job: 4 channels, 8 steps.
TINY = dict(
    dataset="mnist1d", model="cnn", channels=(4, 4, 4), batch=16, steps=8, checksum_every=4, progress=False
)


def _net(channels=(3, 4, 2), length=12, classes=5, variance="exact") -> network.Network:
    cfg = SimpleNamespace(model="cnn", channels=channels, variance=variance)
    return network.build(cfg, length, classes)


def _params64(net, seed):
    rng = np.random.default_rng(seed)
    params = [p.astype(np.float64) for p in net.init_params(seed)]
    for p in params[1::2]:
        p[...] = rng.normal(0, 0.1, p.shape)  # nonzero biases
    return params


def _mean_loss(net, params, x, y, ops) -> float:
    loss, _ = model.softmax_xent(net.logits(params, x, ops), y, ops)
    return float(loss.mean())


def test_cnn_gradients_match_finite_differences():
    """g of every segment (3 convolutions with stride and padding, then dense) equals the
    central difference of the mean loss, in float64 through the blas namespace."""
    ops = model.products("blas")
    net = _net()
    params = _params64(net, 1)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 12))
    y = rng.integers(0, 5, 4)
    _, _, grads, _ = net.gradients(params, x, y, ops)
    numeric = central_differences(params, lambda: _mean_loss(net, params, x, y, ops))
    for j, (g, n) in enumerate(zip(grads, numeric)):
        np.testing.assert_allclose(g, n, rtol=1e-5, atol=1e-8, err_msg=f"segment {net.layout[j][0]}")


@pytest.mark.parametrize("form", ["exact", "approx"])
def test_cnn_variance_is_the_per_sample_definition(form):
    """exact: s = (1/B^2) sum_b grad_b^2 with grad_b the gradient of sample b alone (a batch
    of one); approx: the same with every output position of a convolution a sample of its own.
    float64, blas namespace; the dense layer is exact in both."""
    ops = model.products("blas")
    net = _net(variance=form)
    params = _params64(net, 3)
    rng = np.random.default_rng(4)
    batch = 5
    x = rng.normal(size=(batch, 12))
    y = rng.integers(0, 5, batch)
    _, _, grads, saved = net.gradients(params, x, y, ops)
    terms = net.variance_terms(saved, ops)
    per_sample = [net.gradients(params, x[b : b + 1], y[b : b + 1], ops)[2] for b in range(batch)]
    for j, (name, _) in enumerate(net.layout):
        mean = sum(ps[j] for ps in per_sample) / batch
        np.testing.assert_allclose(grads[j], mean, rtol=1e-10, atol=1e-14)
        if form == "exact" or name.startswith("dense"):
            want = sum(ps[j] ** 2 for ps in per_sample) / batch**2
            np.testing.assert_allclose(terms[j], want, rtol=1e-10, atol=1e-16, err_msg=name)
    # approx, per position: every output position of conv layer l a sample of its own
    patches, deltas = saved[0], saved[1]
    for layer, (cols, d) in enumerate(zip(patches, deltas)):
        a = batch * cols[:, :, :, None] * d[:, :, None, :]  # gradient of (b, p)
        want = (a * a).sum(axis=(0, 1)).ravel() / batch**2 if form == "approx" else None
        if want is not None:
            np.testing.assert_allclose(terms[2 * layer], want, rtol=1e-10, atol=1e-16)


def test_ordered_cnn_is_vgc_ref_conv_grad_var_bit_for_bit():
    """The demo's float32 g and s of each convolution are vgc_ref.variance.conv_grad_var's bits."""
    for form in ("exact", "approx"):
        net = _net(variance=form)
        params = net.init_params(5)
        rng = np.random.default_rng(6)
        x = rng.normal(size=(7, 12)).astype(np.float32)
        y = rng.integers(0, 5, 7)
        ops = model.products()
        _, _, grads, saved = net.gradients(params, x, y, ops)
        terms = net.variance_terms(saved, ops)
        for layer, (cols, d) in enumerate(zip(saved[0], saved[1])):
            g_w, s_w, g_b, s_b = conv_grad_var(cols, d, form)
            assert grads[2 * layer].tobytes() == g_w.ravel().tobytes()
            assert terms[2 * layer].tobytes() == s_w.ravel().tobytes()
            assert grads[2 * layer + 1].tobytes() == g_b.tobytes()
            assert terms[2 * layer + 1].tobytes() == s_b.tobytes()


def test_conv_layers_hold_most_parameters():
    net = _net(channels=(32, 32, 32), length=40, classes=10)
    conv = sum(n for (name, _), n in zip(net.layout, net.seg_sizes) if name.startswith("conv"))
    assert conv / sum(net.seg_sizes) > 0.75
    assert cnn.lengths(40) == [40, 20, 10, 5]


def test_cnn_needs_mnist1d_and_three_channels():
    with pytest.raises(ConfigError, match="--model 'cnn': needs --dataset mnist1d or mnist1d-10k"):
        run_training(TrainConfig(model="cnn", ranks=1))
    with pytest.raises(ConfigError, match="--channels"):
        run_training(TrainConfig(**{**TINY, "channels": (4, 4)}, ranks=1))
    with pytest.raises(ConfigError, match="--variance 'cheap'"):
        run_training(TrainConfig(**{**TINY, "variance": "cheap"}, ranks=1))


def test_default_mlp_header_has_no_cnn_fields():
    """Fields added with the CNN enter the trace header only when set: earlier traces stay valid."""
    arith = TrainConfig().arithmetic()
    assert not {"model", "channels", "variance", "validation"} & set(arith)
    assert TrainConfig(**TINY).arithmetic()["model"] == "cnn"


@pytest.mark.parametrize("variance", ["exact", "approx"])
def test_cnn_checkpoint_resume_and_backends_give_one_trace(tmp_path, variance):
    """A CNN run resumed from a checkpoint, and one with the numba-cpu backend, write the
    trace of the uninterrupted NumPy-backend run, byte for byte."""
    job = dict(TINY, variance=variance, ranks=3)
    full = tmp_path / "full.jsonl"
    run_training(TrainConfig(**job, trace=str(full)))
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(RankFailureError):  # interrupted after the checkpoint of step 4
        run_training(TrainConfig(**job, checkpoint=str(ckpt), checkpoint_every=4, fail_at_step=6))
    resumed = tmp_path / "resumed.jsonl"
    run_training(TrainConfig(**job, resume=str(ckpt), trace=str(resumed)))
    assert resumed.read_bytes() == full.read_bytes(), trace.compare_files(full, resumed)[1]
    other = tmp_path / "numba.jsonl"
    run_training(TrainConfig(**job, backend="numba-cpu", trace=str(other)))
    assert other.read_bytes() == full.read_bytes(), trace.compare_files(full, other)[1]


def test_validation_split_is_held_out():
    r = run_training(TrainConfig(**TINY, validation=500, ranks=2))
    assert r.validation_accuracy is not None and 0.0 <= r.validation_accuracy <= 1.0
    assert run_training(TrainConfig(**TINY, ranks=2)).validation_accuracy is None
    with pytest.raises(ConfigError, match="--batch 16: exceeds the 0 training samples"):
        run_training(TrainConfig(**TINY, validation=4000, ranks=2))


@pytest.mark.mpi
def test_cnn_simulated_ranks_equal_mpiexec(tmp_path):
    from tests.test_mpi_demo import run_demo, run_mpi

    args = ["train", "--dataset", "mnist1d", "--model", "cnn", "--channels", "4,4,4", "--batch", "16"]
    args += ["--steps", "6", "--checksum-every", "3", "--variance", "approx"]
    sim, real = tmp_path / "sim.jsonl", tmp_path / "mpi.jsonl"
    done = run_demo([*args, "--simulate-ranks", "3", "--trace", str(sim)])
    assert done.returncode == 0, done.stderr
    done = run_mpi(3, [*args, "--trace", str(real)])
    assert done.returncode == 0, done.stderr
    assert sim.read_bytes() == real.read_bytes(), trace.compare_files(sim, real)[1]


def test_varcost_rows_are_the_ratio_of_their_timings():
    """python -m mpi_demo.varcost: every layer of both models, exact and approx for each
    convolution, with fraction = variance / (forward + backward)."""
    from mpi_demo import varcost

    rows = varcost.measure(batch=2, repeats=1, channels=(2, 2, 2))
    names = [r["layer"] for r in rows]
    assert sum("(exact)" in n for n in names) == sum("(approx)" in n for n in names) == 3
    for r in rows:
        assert r["fwd_bwd_ms"] > 0 and r["var_ms"] > 0
        assert r["fraction"] == r["var_ms"] / r["fwd_bwd_ms"]
