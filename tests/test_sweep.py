"""The sweep (mpi_demo.study): the pre-registered runs, the non-inferiority rule and its power,
the cache, the outputs."""

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
    assert math.isclose(p["min_diff"], -0.020) and p["worst_seed"] == 3
    assert p["mean_rule"] and not p["seed_rule"]
    assert p["ci_low"] < p["lower_bound"] < p["mean_diff"] < p["ci_high"]
    # exactly one point below, on 1200 test samples (602 -> 590): inside, despite float rounding
    assert 590 / 1200 - 602 / 1200 < -0.01
    assert stats.paired({1: 590 / 1200}, {1: 602 / 1200})["seed_rule"]
    with pytest.raises(ValueError, match="no seed in common"):
        stats.paired({1: 0.5}, {2: 0.5})


def test_non_inferiority_by_hand():
    """Seven differences with mean -0.2 points and sd 0.5 points: the lower bound is
    mean - t(0.95, 6) * sd / sqrt(7) = -0.2 - 1.943 * 0.5 / 2.6458 = -0.567 points: holds.
    The same mean with sd 2 points gives -1.67: does not hold."""
    base = {s: 0.9 for s in range(1, 8)}
    d = [0.003, -0.007, 0.003, -0.007, 0.003, -0.007, -0.002]  # mean -0.002
    p = stats.paired({s: 0.9 + x for s, x in zip(range(1, 8), d)}, base)
    want = stats.mean(d) - 1.943 * stats.sample_sd(d) / math.sqrt(7)
    assert math.isclose(p["lower_bound"], want, abs_tol=1e-12) and p["holds"]
    wide = [0.02, -0.024, 0.02, -0.024, 0.02, -0.024, -0.002]
    q = stats.paired({s: 0.9 + x for s, x in zip(range(1, 8), wide)}, base)
    assert math.isclose(q["mean_diff"], stats.mean(wide)) and not q["holds"]


def test_power_by_hand():
    """sd 1 point, 7 seeds: Phi(1 / (0.01 / sqrt 7) - 1.943) = Phi(2.6458 - 1.943) = Phi(0.703)."""
    assert math.isclose(stats.power(0.01, 7), stats.normal_cdf(math.sqrt(7) - 1.943))
    assert math.isclose(stats.normal_cdf(0.703), 0.759, abs_tol=1e-3)
    assert stats.power(0.005, 7) > stats.power(0.01, 7) > stats.power(0.01, 7, delta=-0.005)
    assert math.isnan(stats.power(0.01, 1))


def _row(study, method, value, seed, acc, ratio, curve=None):
    return {
        "study": study, "method": method, "value": value, "seed": seed, "accuracy": acc,
        "compression_ratio": ratio, "sent_fraction": 1 / ratio, "steps": 10, "n_params": 100,
        "bytes_per_step": 400 / ratio, "variance_s": 0.0, "compute_s": 0.001,
        "validation_curve": curve or [acc],
    }  # fmt: skip


def test_every_setting_runs_on_every_seed_and_nothing_is_tuned():
    study = plan.Study("s", "synthetic", "mlp", 1, 100, grids={"vgc": (1.0, 2.0), "topk": (0.1,)})
    jobs = protocol.jobs([study], seeds=(1, 2, 3))
    assert len(jobs) == 3 * 4
    for seed in (1, 2, 3):
        mine = {(j.method, j.value) for j in jobs if j.seed == seed}
        assert mine == {("none", None), ("vgc", 1.0), ("vgc", 2.0), ("topk", 0.1)}
    assert all(j.phase == "test" and j.fields["validation"] == 100 for j in jobs)


def test_best_is_the_most_compressive_setting_that_holds():
    study = plan.Study("s", "synthetic", "mlp", 1, 100, grids={"vgc": (1.0, 2.0, 4.0)})
    rows = []
    for seed in range(1, 8):
        rows.append(_row("s", "none", None, seed, 0.90, 1.0, [0.5, 0.8, 0.9]))
        rows.append(_row("s", "vgc", 1.0, seed, 0.90 + 0.001 * (seed % 2), 10.0, [0.4, 0.85, 0.9]))
        rows.append(_row("s", "vgc", 2.0, seed, 0.898, 20.0, [0.3, 0.7, 0.889]))
        rows.append(_row("s", "vgc", 4.0, seed, 0.85, 40.0, [0.2, 0.5, 0.85]))
    summary = protocol.summarize([study], rows)
    assert [s["method"] for s in summary] == ["none", "vgc", "vgc", "vgc"]
    best = protocol.best(summary)
    assert len(best) == 1 and best[0]["best"]["value"] == 2.0 and best[0]["highest_ratio_tried"] == 40.0
    # validation: within one point of the baseline's final 0.9 (>= 0.89): epoch 3 for alpha 1,
    # never for alpha 2 (0.889) and 4; the baseline reaches its own 0.89 at epoch 3
    epochs = {s["value"]: s["epochs_within_one_point"] for s in summary}
    assert epochs == {None: 3, 1.0: 3, 2.0: None, 4.0: None}


def test_config_fields_of_each_method():
    study = plan.FULL[0]
    exact = plan.config_fields(study, plan.Setting(study.name, "vgc-exact", 2.0), 1)
    approx = plan.config_fields(study, plan.Setting(study.name, "vgc-approx", 2.0), 1)
    reset = plan.config_fields(study, plan.Setting(study.name, "vgc-exact-reset", 2.0), 1)
    assert exact["method"] == approx["method"] == reset["method"] == "vgc" and approx["variance"] == "approx"
    assert "variance" not in exact and "residual" not in exact and reset["residual"] == "reset"
    hybrid = plan.config_fields(study, plan.Setting(study.name, "hybrid", 0.1), 1)
    assert hybrid["tau"] == 0.1 and hybrid["alpha"] == 2.0
    topk = plan.config_fields(study, plan.Setting(study.name, "topk", 0.01), 1)
    assert topk["fraction"] == 0.01 and topk["model"] == "cnn" and topk["lr_schedule"] == "cosine"
    assert topk["dataset"] == "mnist1d-10k"


def test_full_grids_are_wide_and_every_method_is_there():
    main = next(s for s in plan.FULL if s.name == "mnist1d-cnn")
    assert set(main.methods) == {"vgc-exact", "vgc-exact-reset", "vgc-approx", "strom", "hybrid", "topk"}
    assert len(plan.SEEDS) >= 7
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


def test_markdown_block_names_commit_rule_and_best(tmp_path):
    study = plan.Study("s", "synthetic", "mlp", 1, 100, grids={"vgc": (1.0, 2.0)})
    rows = [_row("s", "none", None, seed, 0.90, 1.0) for seed in range(1, 8)]
    rows += [_row("s", "vgc", 1.0, seed, 0.90, 10.0) for seed in range(1, 8)]
    rows += [_row("s", "vgc", 2.0, seed, 0.85, 20.0) for seed in range(1, 8)]
    summary = protocol.summarize([study], rows)
    meta = {"command": "python -m mpi_demo sweep",
            "provenance": {"commit": "abc123def4567890", "dirty": False, "machine": {"cores": 2}},
            "code_hash": "f" * 64, "n_trained": 2, "n_cached": 0, "elapsed_s": 60.0, "jobs": 2,
            "load": [1.0, 2.0], "seeds": list(range(1, 8))}  # fmt: skip
    block = report.markdown_block(summary, meta)
    assert block.startswith(report.BEGIN) and block.endswith(report.END)
    assert "abc123def456" in block and "one-sided 95 % lower bound" in block
    assert "| s | vgc | 1 | **10.0x** |" in block and "20.0x |" in block
    assert f"results/{report.FIGURE}" in block
    md = tmp_path / "r.md"
    md.write_text(f"intro\n{report.BEGIN}\nstale text\n{report.END}\noutro\n")
    report.update_markdown(md, block)
    text = md.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "stale text" not in text
    pytest.importorskip("matplotlib")
    report.plot(summary, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    assert {r["seed"] for r in doc["runs"]} == set(plan.QUICK_SEEDS)
    assert all(len(r["validation_curve"]) == 1 for r in doc["runs"])  # one (cut) epoch each
    assert (tmp_path / report.FIGURE).stat().st_size > 0
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
    fields = plan.config_fields(plan.FULL[1], plan.Setting("synthetic-mlp", "topk", 0.01), 2)
    json.dumps(fields)
    assert Job("s", "topk", 0.01, 2, "test", fields).seed == 2
    assert Path(cache.ROOT / "mpi_demo").is_dir()


def test_readme_and_results_page_quote_the_recorded_sweep():
    """The ratios the README and docs/results.md's verdict quote are those the recorded runs
    (docs/results/results.json) give under this version's statistics."""
    root = Path(__file__).resolve().parents[1]
    doc = json.loads((root / "docs" / "results" / "results.json").read_text())
    studies = tuple(s for s in plan.FULL if s.name in {d["name"] for d in doc["studies"]})
    best = protocol.best(protocol.summarize(studies, doc["runs"]))
    readme = (root / "README.md").read_text().split("## What VGC buys here")[1].split("\n## ")[0]
    verdict = (root / "docs" / "results.md").read_text().split("### Verdict, in plain words")[1]
    verdict = verdict.split("\n## ")[0]
    for b in best:
        ratio = "none" if b["best"] is None else f"{b['best']['compression_ratio']:.1f}x"
        assert ratio in verdict, f"docs/results.md's verdict lacks {b['study']} {b['method']}: {ratio}"
        if b["method"] != "vgc-exact-reset" and b["method"] != "vgc-reset":
            assert ratio in readme, f"README lacks {b['study']} {b['method']}: {ratio}"
    assert len(doc["seeds"]) == len(plan.SEEDS) and {r["seed"] for r in doc["runs"]} == set(plan.SEEDS)
