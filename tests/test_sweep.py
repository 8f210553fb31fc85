"""The sweep (mpi_demo.study): tuning rule, grid extension, paired statistics, cache, outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mpi_demo.study import cache, plan, protocol, report, stats
from mpi_demo.study.runner import Job


def test_t_interval_by_hand():
    """[1, 2, 3]: mean 2, sd 1, half-width t(0.975, 2) / sqrt(3) = 4.303 / 1.732."""
    low, high = stats.t_interval([1.0, 2.0, 3.0])
    assert math.isclose(low, 2 - 4.303 / math.sqrt(3)) and math.isclose(high, 2 + 4.303 / math.sqrt(3))
    assert all(math.isnan(v) for v in stats.t_interval([1.0]))


def test_paired_rules_differ_when_one_seed_falls_behind():
    """Mean -0.6 points passes the mean rule; the seed at -2 points fails the per-seed rule."""
    p = stats.paired({1: 0.900, 2: 0.905, 3: 0.880}, {1: 0.898, 2: 0.905, 3: 0.900})
    assert p["seeds"] == [1, 2, 3]
    assert math.isclose(p["mean_diff"], (0.002 + 0.0 - 0.020) / 3)
    assert math.isclose(p["min_diff"], -0.020)
    assert p["mean_rule"] and not p["seed_rule"]
    assert p["ci_low"] < p["mean_diff"] < p["ci_high"]
    # exactly one point below, on 1200 test samples (602 -> 590): inside, despite float rounding
    assert 590 / 1200 - 602 / 1200 < -0.01
    assert stats.paired({1: 590 / 1200}, {1: 602 / 1200})["seed_rule"]
    with pytest.raises(ValueError, match="no seed in common"):
        stats.paired({1: 0.5}, {2: 0.5})


def test_choose_takes_the_most_compressive_value_within_one_point():
    results = {1.0: (0.900, 5.0), 2.0: (0.895, 20.0), 4.0: (0.880, 80.0)}
    assert protocol.choose("vgc", results, 0.902)[0] == 2.0  # 0.895 >= 0.892; 0.880 is not
    # none within one point: the most accurate
    value, why = protocol.choose("vgc", results, 0.99)
    assert value == 1.0 and why.startswith("none within one point")
    # topk compresses more with a smaller fraction
    assert protocol.choose("topk", {0.1: (0.9, 9.0), 0.01: (0.9, 90.0)}, 0.9)[0] == 0.01


def _fake_runner(threshold: float):
    """Accuracy 0.9 up to ``threshold`` of the hyperparameter and 0.5 beyond; ratio = 10 * value."""
    calls = []

    def run_many(jobs):
        calls.append(list(jobs))
        rows = []
        for j in jobs:
            v = j.value
            acc = 0.9 if v is None or v <= threshold else 0.5
            rows.append(
                {
                    "study": j.study,
                    "method": j.method,
                    "value": v,
                    "accuracy": acc,
                    "compression_ratio": 10 * (v or 0.1),
                }
            )
        return rows

    return run_many, calls


def test_tuning_extends_the_grid_until_the_choice_is_inside():
    """A choice at the most compressive edge grows the grid past it, one value at a time, until
    a value fails; the chosen value then has a neighbour on each side."""
    study = plan.Study("s", "synthetic", "mlp", 1, 100, grids={"vgc": (1.0, 1.5)})
    run_many, calls = _fake_runner(threshold=3.0)
    _, choices = protocol.tune([study], run_many)
    c = choices["s"]["vgc"]
    assert c["value"] == 2.25 and c["inside"]
    assert c["values"] == [1.0, 1.5, 2.25, 3.375]
    assert len(calls) == 3  # the grid, then two extensions
    assert all(j.phase == "tuning" and j.seed == plan.TUNING_SEED for batch in calls for j in batch)


def test_tuning_stops_after_max_extensions_and_says_so():
    study = plan.Study("s", "synthetic", "mlp", 1, 100, grids={"vgc": (1.0, 1.5)})
    run_many, _ = _fake_runner(threshold=1e9)
    _, choices = protocol.tune([study], run_many)
    c = choices["s"]["vgc"]
    assert len(c["values"]) == 2 + plan.MAX_EXTENSIONS and not c["inside"]


def test_least_compressive_edge_is_extended_too():
    study = plan.Study("s", "synthetic", "mlp", 1, 100, grids={"strom": (0.1, 0.3)})
    run_many, _ = _fake_runner(threshold=0.15)
    _, choices = protocol.tune([study], run_many)
    c = choices["s"]["strom"]
    assert c["value"] == 0.1 and c["inside"] and min(c["values"]) < 0.1


def test_test_phase_uses_fresh_seeds_and_the_chosen_values():
    study = plan.Study("s", "synthetic", "mlp", 1, 100, grids={"vgc": (1.0,)})
    seen = []
    protocol.test([study], {"s": {"vgc": {"value": 1.5}}}, lambda jobs: seen.extend(jobs) or [])
    assert {j.seed for j in seen} == set(plan.TEST_SEEDS) and plan.TUNING_SEED not in plan.TEST_SEEDS
    assert {(j.method, j.value) for j in seen} == {("none", None), ("vgc", 1.5)}
    assert all(j.phase == "test" and j.fields["validation"] == 100 for j in seen)


def test_config_fields_of_each_method():
    study = plan.FULL[0]
    exact = plan.config_fields(study, plan.Setting(study.name, "vgc-exact", 2.0), 1, False)
    approx = plan.config_fields(study, plan.Setting(study.name, "vgc-approx", 2.0), 1, False)
    assert exact["method"] == approx["method"] == "vgc" and approx["variance"] == "approx"
    assert "variance" not in exact  # the default, exact
    hybrid = plan.config_fields(study, plan.Setting(study.name, "hybrid", 0.1), 1, False)
    assert hybrid["tau"] == 0.1 and hybrid["alpha"] == 2.0
    topk = plan.config_fields(study, plan.Setting(study.name, "topk", 0.01), 1, False)
    assert topk["fraction"] == 0.01 and topk["model"] == "cnn"


def test_full_grids_are_wide_and_every_method_is_tuned():
    main = next(s for s in plan.FULL if s.name == "mnist1d-cnn")
    assert set(main.methods) == {"vgc-exact", "vgc-approx", "strom", "hybrid", "topk"}
    for s in plan.FULL:
        for values in s.grids.values():
            assert len(values) >= 4 and max(values) / min(values) >= 5


def test_cache_key_depends_on_config_and_code(tmp_path):
    a = cache.run_key({"seed": 1}, "c0")
    assert a == cache.run_key({"seed": 1}, "c0")
    assert a != cache.run_key({"seed": 2}, "c0") and a != cache.run_key({"seed": 1}, "c1")
    path = tmp_path / "c.jsonl"
    cache.append(path, a, {"accuracy": 0.5})
    with open(path, "a") as f:
        f.write('{"key": "cut sh')  # an interrupted write
    assert cache.load(path) == {a: {"accuracy": 0.5}}


def test_code_hash_follows_the_numeric_sources(tmp_path):
    for rel in ("vgc_ref/a.py", "mpi_demo/train.py", "mpi_demo/study/report.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x = 1\n")
    h = cache.code_hash(tmp_path)
    (tmp_path / "mpi_demo/study/report.py").write_text("x = 2\n")  # reporting only
    assert cache.code_hash(tmp_path) == h
    (tmp_path / "mpi_demo/train.py").write_text("x = 2\n")
    assert cache.code_hash(tmp_path) != h
    assert {p.name for p in cache.code_files(tmp_path)} == {"a.py", "train.py"}


def test_markdown_block_names_commit_and_both_rules(tmp_path):
    summary = [
        {"study": "s", "method": "none", "mean_accuracy": 0.9, "sd_accuracy": 0.01, "min_accuracy": 0.89,
         "max_accuracy": 0.91},
        {"study": "s", "method": "vgc", "value": 2.0, "values": [1.0, 2.0, 3.0], "inside": True,
         "validation_accuracy": 0.9, "mean_accuracy": 0.895, "compression_ratio": 40.0, "mean_diff": -0.005,
         "ci_low": -0.02, "ci_high": 0.01, "min_diff": -0.015, "mean_rule": True, "seed_rule": False},
    ]  # fmt: skip
    meta = {"command": "python -m mpi_demo sweep",
            "provenance": {"commit": "abc123def4567890", "dirty": False},
            "code_hash": "f" * 64, "n_trained": 2, "n_cached": 0, "elapsed_s": 60.0, "jobs": 2,
            "load": [1.0, 2.0], "baseline_validation": {"s": 0.9}}  # fmt: skip
    block = report.markdown_block(summary, meta)
    assert block.startswith(report.BEGIN) and block.endswith(report.END)
    assert "abc123def456" in block
    assert "| s | vgc | 40.0x | none |" in block
    md = tmp_path / "r.md"
    md.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\noutro\n")
    report.update_markdown(md, block)
    text = md.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text


@pytest.mark.slow
def test_quick_sweep_end_to_end_and_reuse(tmp_path):
    """The quick synthetic study trains, writes results.json/csv naming the commit and code;
    with --reuse, a second run trains nothing and reports the same numbers."""
    from mpi_demo.study.cli import main

    args = ["--quick", "--studies", "synthetic-mlp", "--out", str(tmp_path), "--jobs", "1"]
    assert main(args) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["code_hash"] == cache.code_hash() and "commit" in doc["provenance"]
    assert doc["n_trained"] == len(doc["runs"]) > 0
    tuning = [r for r in doc["runs"] if r["phase"] == "tuning"]
    assert {r["seed"] for r in tuning} == {plan.TUNING_SEED}
    csv_text = (tmp_path / "results.csv").read_text()
    assert csv_text.splitlines()[0].startswith("study,method,value")
    assert csv_text.splitlines()[1].endswith(f",{doc['provenance']['commit']},{doc['code_hash']}")
    assert main([*args, "--reuse"]) == 0
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["n_trained"] == 0 and again["summary"] == doc["summary"]
    # --render rebuilds the same outputs from the recorded runs, training nothing
    rendered = tmp_path / "rendered"
    assert main(["--quick", "--render", str(tmp_path / "results.json"), "--out", str(rendered)]) == 0
    assert (rendered / "results.csv").read_text() == csv_text


def test_unknown_study_is_refused(capsys):
    from mpi_demo.study.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--studies", "cifar"])
    assert exit_.value.code == 2
    assert "--studies 'cifar'" in capsys.readouterr().err


def test_job_is_hashable_config_fields_json_ready():
    fields = plan.config_fields(plan.FULL[1], plan.Setting("mnist1d-mlp", "topk", 0.01), 2, True)
    json.dumps(fields)
    assert Job("s", "topk", 0.01, 2, "tuning", fields).seed == 2
    assert Path(cache.ROOT / "mpi_demo").is_dir()
