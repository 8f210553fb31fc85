"""vgc_ref.torch.bench end to end: ``--quick`` on 2 gloo processes, the JSON's shape, bad options.

No timing is asserted: the benchmark's figures are measurements, not properties.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="vgc_ref.torch.bench needs the torch extra (pip install -e '.[torch]')")

from vgc_ref.torch import bench

TIMEOUT = 240  # seconds for the --quick job (about 25 s on a loaded 2-core machine)
ROW_KEYS = {
    "size",
    "params",
    "method",
    "ms_per_step_min",
    "ms_per_step_median",
    "ms_per_step_repeats",
    "ratio_to_allreduce_median",
    "phases_ms_median_rank0",
    "hook_parts_ms_median_rank0",
    "compression_ratio",
    "sent_fraction",
}


def _bench(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    env.pop("VGC_PARSE_ONLY", None)
    cmd = [sys.executable, "-m", "vgc_ref.torch.bench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env)


def test_quick_run_writes_a_row_per_method(tmp_path):
    """--quick (numpy backend: no JIT, to stay short) runs on 2 ranks and writes JSON with one
    row for each of allreduce, powersgd and vgc, the vgc row with its compression from stats()
    and its hook parts, and prints the table."""
    out = tmp_path / "bench.json"
    proc = _bench("--quick", "--backends", "numpy", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["world"] == 2
    assert set(result["machine"]) >= {"cpu", "cpu_flags", "cores", "load_average", "torch"}
    rows = result["rows"]
    assert [r["method"] for r in rows] == ["allreduce", "powersgd", "vgc/numpy"]
    for r in rows:
        assert ROW_KEYS <= set(r), r["method"]
        assert len(r["ms_per_step_repeats"]) == result["repeats"]
        assert 0 < r["ms_per_step_min"] <= r["ms_per_step_median"]
        assert set(r["phases_ms_median_rank0"]) == {"forward", "backward", "optimizer"}
    by = {r["method"]: r for r in rows}
    assert by["allreduce"]["ratio_to_allreduce_median"] == 1.0
    assert by["allreduce"]["compression_ratio"] is None
    assert by["powersgd"]["compression_ratio"] > 1  # it compressed during the timed steps
    vgc = by["vgc/numpy"]
    assert 0 < vgc["sent_fraction"] < 1 and vgc["compression_ratio"] > 1
    assert vgc["stats"]["steps"] == result["warmup"] + result["steps"] * result["repeats"]
    assert set(vgc["hook_parts_ms_median_rank0"]) >= {"hook", "compress", "finish"}
    assert "vgc/numpy" in proc.stdout and "x allreduce" in proc.stdout
    paired = bench.repeat_ratios(vgc, by["powersgd"])
    assert f"per repeat {min(paired):.2f}-{max(paired):.2f}" in proc.stdout


def test_repeat_ratios_pair_the_repeats():
    """Repeat k of one method over repeat k of the other; unequal repeat counts refused."""
    a = {"ms_per_step_repeats": [10.0, 30.0, 12.0]}
    b = {"ms_per_step_repeats": [5.0, 20.0, 12.0]}
    assert bench.repeat_ratios(a, b) == [2.0, 1.5, 1.0]
    with pytest.raises(ValueError):
        bench.repeat_ratios(a, {"ms_per_step_repeats": [1.0]})


@pytest.mark.parametrize(
    "args",
    [["--steps", "0"], ["--sizes", "ten"], ["--backends", "nope"], ["--warmup", "1"], ["--no-such"]],
)
def test_bad_option_is_refused_with_exit_2(capsys, monkeypatch, args):
    """A bad option ends the command before any work (in this process: nothing is spawned):
    exit status 2, one line naming it."""
    monkeypatch.delenv("VGC_PARSE_ONLY", raising=False)
    with pytest.raises(SystemExit) as exc:
        bench.main(args)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m vgc_ref.torch.bench: error:"), lines


def test_unwritable_json_is_refused_before_work(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("VGC_PARSE_ONLY", raising=False)
    with pytest.raises(SystemExit) as exc:
        bench.main(["--quick", "--json", str(tmp_path / "missing" / "bench.json")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--json" in err and "does not exist" in err


def test_bad_option_exits_2_from_the_command_line():
    """The same through ``python -m``: the module's entry point returns the status."""
    proc = _bench("--repeats", "0")
    assert proc.returncode == 2 and proc.stderr.startswith("python -m vgc_ref.torch.bench: error: --repeats")


def test_sizes_give_mlps_near_the_size_asked():
    """--sizes' parser and the width rule: 1M and 10M give MLPs within 0.1 % of the size."""
    assert bench.parse_size("1M") == 10**6 and bench.parse_size("250K") == 250_000
    for size in (10**6, 10**7):
        assert abs(bench.param_count(bench.width_for(size)) - size) < 1e-3 * size
