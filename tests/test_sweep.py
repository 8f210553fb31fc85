"""The accuracy-against-ratio sweep: a tiny grid end to end, its files, and its summary rule."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from mpi_demo import sweep

#: A tiny job: one hidden layer, 20 steps; each run takes a fraction of a second.
TINY = dict(samples=400, hidden=(16,), batch=32, steps=20, checksum_every=5)


def _summary_row(dataset, method, label, acc, ratio, sent=0.1):
    return {
        "dataset": dataset,
        "method": method,
        "label": label,
        "test_acc_mean": acc,
        "compression_ratio": ratio,
        "sent_fraction": sent,
    }


def test_grid_has_every_method_and_the_issue_values():
    specs = sweep.grid()
    for ds in sweep.DATASETS:
        methods = {s.method for s in specs if s.dataset == ds}
        assert methods == {"none", "vgc", "strom", "hybrid", "topk"}
        alphas = {s.alpha for s in specs if s.dataset == ds and s.method == "vgc"}
        assert {1.0, 1.5, 2.0, 3.0} <= alphas
        assert all(s.zeta == 0.999 for s in specs if s.method == "vgc")
        fractions = {s.fraction for s in specs if s.dataset == ds and s.method == "topk"}
        assert {0.001, 0.01, 0.1} <= fractions
    assert sweep.SEEDS == (0, 1, 2)


def test_tiny_grid_end_to_end(tmp_path):
    specs = [sweep.Spec("synthetic", "none"), sweep.Spec("synthetic", "vgc", alpha=2.0)]
    rows = sweep.run_grid(specs, (0,), overrides=TINY, log=None)
    assert len(rows) == 2
    for row in rows:
        assert row["ranks"] == sweep.RANKS
        assert row["steps"] == TINY["steps"]
        assert 0.0 <= row["test_accuracy"] <= 1.0
        assert row["step_s"] == pytest.approx(sum(row[f"{p}_s"] for p in sweep.PHASES))
    none, vgc = rows
    assert none["sent_fraction"] == 1.0
    assert none["compression_ratio"] < 1.0  # headers and CRC: a dense message is a bit over 4N bytes
    assert vgc["compression_ratio"] > 1.0
    assert vgc["variance_s"] > 0.0 and none["variance_s"] < vgc["variance_s"]

    summary = sweep.summarize(rows)
    sweep.write_csv(summary, tmp_path / "results.csv")
    meta = {"command": "test", "date": "today", "n_runs": 2, "train_s": 1.0, "seeds": [0]}
    meta.update(ranks=4, communicator="simulated")
    sweep.write_json(rows, summary, tmp_path / "results.json", meta)
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0].keys()) == sweep.SUMMARY_COLUMNS
    assert [t["label"] for t in table] == ["none", "vgc a=2"]
    doc = json.loads((tmp_path / "results.json").read_text())
    assert {"command", "machine", "summary", "verdicts", "runs"} <= doc.keys()
    assert doc["machine"]["versions"]["numpy"]
    assert len(doc["runs"]) == 2

    md = tmp_path / "results.md"
    md.write_text(f"# Results\n\nprose before\n\n{sweep.BEGIN}\nold\n{sweep.END}\n\nprose after\n")
    sweep.update_markdown(md, sweep.markdown_block(summary, meta, None))
    text = md.read_text()
    assert "prose before" in text and "prose after" in text and "old" not in text
    assert "| vgc a=2" in text


def test_ratio_and_fraction_are_of_totals_over_seeds():
    base = {"dataset": "d", "method": "vgc", "label": "vgc a=2", "alpha": 2.0, "zeta": 0.999}
    base.update(tau=None, fraction=None, ranks=4, steps=10, n_params=1000, dense_bytes=4000)
    base.update({f"{p}_s": 0.001 for p in sweep.PHASES})
    a = {**base, "seed": 0, "test_accuracy": 0.8, "compression_ratio": 4000 / 100}
    a.update(bytes_per_step=100.0, sent_fraction=0.02)
    b = {**base, "seed": 1, "test_accuracy": 0.9, "compression_ratio": 4000 / 300}
    b.update(bytes_per_step=300.0, sent_fraction=0.06)
    (s,) = sweep.summarize([a, b])
    assert s["compression_ratio"] == pytest.approx(8000 / 400)  # not the mean of 40 and 13.3
    assert s["sent_fraction"] == pytest.approx(0.04)
    assert s["test_acc_mean"] == pytest.approx(0.85)
    assert s["test_acc_min"] == 0.8 and s["test_acc_max"] == 0.9


def test_best_within_one_point_on_a_hand_made_table():
    table = [
        _summary_row("syn", "none", "none", 0.800, 1.0),
        _summary_row("syn", "vgc", "vgc a=1", 0.805, 8.0),
        _summary_row("syn", "vgc", "vgc a=2", 0.790, 40.0),  # exactly one point below: counts
        _summary_row("syn", "vgc", "vgc a=3", 0.7899, 90.0),  # just over one point below: does not
        _summary_row("syn", "strom", "strom tau=1", 0.70, 500.0),  # below
        _summary_row("syn", "topk", "topk 0.01", 0.81, 60.0),
        _summary_row("syn", "topk", "topk 0.1", 0.82, 7.0),
        _summary_row("dig", "none", "none", 0.95, 1.0),
        _summary_row("dig", "vgc", "vgc a=2", 0.96, 30.0),
    ]
    assert sweep.best_within(table, "syn", "vgc")["label"] == "vgc a=2"
    assert sweep.best_within(table, "syn", "strom") is None
    assert sweep.best_within(table, "syn", "topk")["compression_ratio"] == 60.0
    assert sweep.best_within(table, "dig", "vgc")["label"] == "vgc a=2"
    assert sweep.best_within(table, "nope", "vgc") is None  # no baseline
    by = {(v["dataset"], v["method"]): v for v in sweep.verdicts(table)}
    assert by[("syn", "vgc")]["best_ratio"] == 40.0
    assert by[("syn", "vgc")]["baseline_acc"] == 0.8
    assert by[("syn", "strom")]["best_ratio"] is None
    assert ("syn", "hybrid") not in by  # not run: not reported
    assert ("dig", "topk") not in by


def test_plot_is_skipped_with_a_message_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(sweep.PlotUnavailableError, match=r"matplotlib is not installed.*\.\[plot\]"):
        sweep.plot([_summary_row("syn", "none", "none", 0.8, 1.0)], tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    table = [
        {**_summary_row("syn", "none", "none", 0.8, 1.0), "test_acc_min": 0.79, "test_acc_max": 0.81},
        {**_summary_row("syn", "vgc", "vgc a=2", 0.79, 40.0), "test_acc_min": 0.78, "test_acc_max": 0.8},
    ]
    sweep.plot(table, tmp_path / "p.png")
    assert Path(tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_topk_runs_with_its_fraction():
    (row,) = sweep.run_grid([sweep.Spec("synthetic", "topk", fraction=0.01)], (0,), overrides=TINY, log=None)
    assert row["fraction"] == 0.01
    assert 0.005 < row["sent_fraction"] < 0.05  # about 1 % of every segment (at least one element each)
    assert row["variance_s"] < 1e-3  # top-k needs no variance term
