"""MNIST-1D as stored float32 arrays (mpi_demo/mnist1d.npz, docs/demo.md "MNIST-1D").

The file is the data set's definition, so what is tested here is that it is the pinned one,
that anything else is refused in one line, that the package that generated it still
regenerates it within float32 rounding (where the ``mnist1d`` extra is installed), and that
the large test split is what docs/demo.md says it is.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from mpi_demo import cli, data, mnist1d
from mpi_demo.config import ConfigError, TrainConfig, validate

ROOT = Path(__file__).resolve().parents[1]
needs_package = pytest.mark.skipif(
    importlib.util.find_spec("mnist1d") is None, reason="regenerating needs the mnist1d package (extra)"
)


def _tool():
    spec = importlib.util.spec_from_file_location("make_mnist1d", ROOT / "tools" / "make_mnist1d.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fresh(monkeypatch):
    """mnist1d with an empty per-process cache; restores it afterwards."""
    monkeypatch.setattr(mnist1d, "_CACHE", {})
    return mnist1d


def test_stored_arrays_are_the_pinned_ones(fresh):
    """Every array has the documented dtype and shape, and the six hash to the pin."""
    arrays = fresh.load_arrays()
    assert list(arrays) == list(mnist1d.ARRAYS)
    for name, (dtype, shape) in mnist1d.ARRAYS.items():
        assert arrays[name].dtype == dtype and arrays[name].shape == shape, name
    assert mnist1d.digest(arrays) == mnist1d.SHA256
    for name in ("y", "y_test", "y_test_10k"):
        assert set(np.unique(arrays[name]).tolist()) == set(range(mnist1d.CLASSES)), name
    for name in ("x", "x_test", "x_test_10k"):
        assert np.all(np.isfinite(arrays[name])), name


def _write(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "damage,message",
    [
        ("missing", "cannot read the MNIST-1D arrays"),
        ("not_zip", "cannot read the MNIST-1D arrays"),
        ("no_x_test_10k", "cannot read the MNIST-1D arrays"),
        ("float64", "array x is float64[4000, 40], not float32[4000, 40]"),
        ("short", "array y_test is int64[999], not int64[1000]"),
        ("one_value", "not the pinned " + mnist1d.SHA256),
    ],
)
def test_other_files_are_refused_in_one_line(tmp_path, monkeypatch, fresh, damage, message):
    """A missing, unreadable, incomplete, mistyped or edited file raises Mnist1dError with
    one line naming the file and what is wrong; the demo then exits 2 before training."""
    arrays = dict(fresh.load_arrays())
    fresh._CACHE.clear()
    path = tmp_path / "mnist1d.npz"
    if damage == "not_zip":
        path.write_bytes(b"not a zip file")
    elif damage == "no_x_test_10k":
        _write(path, **{k: v for k, v in arrays.items() if k != "x_test_10k"})
    elif damage == "float64":
        _write(path, **{**arrays, "x": arrays["x"].astype(np.float64)})
    elif damage == "short":
        _write(path, **{**arrays, "y_test": arrays["y_test"][:-1]})
    elif damage == "one_value":
        x = arrays["x_test_10k"].copy()
        x[9999, 39] = np.nextafter(x[9999, 39], np.float32(np.inf))  # one ulp
        _write(path, **{**arrays, "x_test_10k": x})
    monkeypatch.setattr(fresh, "PATH", path)
    with pytest.raises(mnist1d.Mnist1dError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        fresh.load_arrays()
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert fresh._CACHE == {}
    argv = ["train", "--dataset", "mnist1d", "--model", "cnn", "--steps", "1", "--simulate-ranks", "1"]
    assert cli.main(argv) == 2


@pytest.mark.parametrize(
    "name,n_test,split", [("mnist1d", 1000, "x_test"), ("mnist1d-10k", 10000, "x_test_10k")]
)
def test_both_data_sets_share_the_training_signals(name, n_test, split):
    """mnist1d and mnist1d-10k: the same 4,000 training signals, their own test split, used
    as stored (no reshuffle, no standardisation); the config counts the same samples."""
    arrays = mnist1d.load_arrays()
    ds = data.load_dataset(name, seed=7)
    assert ds.x_train is arrays["x"] and ds.y_train is arrays["y"]
    assert ds.x_test is arrays[split] and ds.x_test.shape == (n_test, 40)
    assert data.n_samples(name, 6000) == 4000 + n_test
    assert data.n_test_samples(name, data.n_samples(name, 6000), 0.5) == n_test
    validate(TrainConfig(dataset=name, model="cnn", validation=500, batch=3500))
    with pytest.raises(ConfigError, match="--batch 3501: exceeds the 3500 training samples"):
        validate(TrainConfig(dataset=name, model="cnn", validation=500, batch=3501))


def test_large_test_split_is_new_balanced_and_scaled_like_the_training_signals():
    """x_test_10k: 1,000 signals per class, none equal to a canonical signal, centred and
    scaled with the canonical statistics (so its mean and std are near 0 and 1, not exactly)."""
    a = mnist1d.load_arrays()
    assert np.bincount(a["y_test_10k"]).tolist() == [1000] * 10
    canonical = {row.tobytes() for row in np.concatenate([a["x"], a["x_test"]])}
    assert not any(row.tobytes() in canonical for row in a["x_test_10k"])
    x10 = a["x_test_10k"].astype(np.float64)
    assert abs(x10.mean()) < 0.02 and abs(x10.std() - 1.0) < 0.02
    assert x10.mean() != 0.0 and x10.std() != 1.0  # not scaled with its own statistics


def test_the_boundary_check_tells_midpoints_from_ordinary_values():
    """The regeneration check excuses a differing float32 only within 1e-12 of a midpoint."""
    tool = _tool()
    one = np.float64(1.0)
    ulp = np.float64(np.spacing(np.float32(1.0)))
    x = np.array([one + ulp / 2, one + ulp / 2 * (1 + 1e-13), one + ulp / 4, -(one + ulp / 2)])
    assert tool.near_boundary(x).tolist() == [True, True, False, True]


def test_the_regeneration_check_reports_a_changed_value():
    """compare() names an array whose float32 rounding differs away from a boundary."""
    tool = _tool()
    stored = {k: v.copy() for k, v in mnist1d.load_arrays().items()}
    as64 = {k: (v.astype(np.float64) if k.startswith("x") else v) for k, v in stored.items()}
    assert tool.compare(as64, stored) == []
    as64["x"][3, 7] += 1e-3
    as64["y_test"] = as64["y_test"].copy()
    as64["y_test"][0] = (as64["y_test"][0] + 1) % 10
    assert tool.compare(as64, stored) == [
        "x: 1 values differ beyond float32 rounding",
        "y_test: 1 labels differ",
    ]


@needs_package
def test_the_package_regenerates_the_stored_arrays():
    """mnist1d 0.0.2.post1 on this machine gives the stored float32 values, except where its
    float64 value lies within 1e-12 of a float32 rounding boundary (about 6 s)."""
    tool = _tool()
    before = np.random.get_state()  # noqa: NPY002 -- the package reseeds the global generator
    assert tool.compare(tool.generate(), mnist1d.load_arrays()) == []
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == before[0] and np.array_equal(after[1], before[1]) and after[2:] == before[2:]


def test_the_demo_needs_neither_the_package_nor_scipy():
    """Loading the data set imports neither mnist1d nor SciPy (a subprocess, fresh imports)."""
    import subprocess

    code = (
        "import sys; from mpi_demo import data; data.load_dataset('mnist1d-10k', 0); "
        "print(sorted(m for m in ('mnist1d', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
