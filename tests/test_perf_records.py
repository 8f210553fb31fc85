"""The figures of docs/performance.md that come from a recorded run match the record.

A benchmark's figures are measurements, not properties, so nothing here times anything:
each table is compared with the JSON file the command wrote (docs/performance/), so that a
figure a reader sees is the one recorded, rounded as printed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_step_table_is_the_recorded_run():
    """The step-against-yardstick table (python -m vgc_ref.bench --step --json
    docs/performance/step-bench.json): times to 0.1 ms, ratios to 0.01, per thread count."""
    record = json.loads((ROOT / "docs/performance/step-bench.json").read_text())
    rows = {r["op"]: r for r in record["rows"]}
    text = (ROOT / "docs/performance.md").read_text()
    found = re.findall(
        r"^\| (\d) \| ([\d.]+) ms \| ([\d.]+) ms \| ([\d.]+)x \(([\d.]+)x\)"
        r" \| ([\d.]+) ms \| \*\*([\d.]+)x\*\* \(([\d.]+)x\) \|$",
        text,
        re.M,
    )
    assert sorted(f[0] for f in found) == ["1", "2"], found
    for threads, yard, step, step_x, step_xm, scratch, scratch_x, scratch_xm in found:
        suffix = f", {threads} thread(s)"
        assert yard == f"{1e3 * rows['fused yardstick' + suffix]['seconds']:.1f}"
        for label, t, x, xm in (
            ("vgc_step", step, step_x, step_xm),
            ("vgc_step_scratch", scratch, scratch_x, scratch_xm),
        ):
            row = rows[f"{label} 1%{suffix}"]
            assert (t, x, xm) == (
                f"{1e3 * row['seconds']:.1f}",
                f"{row['vs_fused']:.2f}",
                f"{row['vs_fused_median']:.2f}",
            ), (label, threads)
        # never slower with more threads
        assert threads == "1" or rows[f"vgc_step_scratch 1%{suffix}"]["vs_one_thread"] < 1


def test_the_docs_into_table_is_the_recorded_run():
    """The table of the scratch step into a spare against copy + step in place (the same
    record): medians to 0.1 ms and their ratio to 0.01, per thread count."""
    record = json.loads((ROOT / "docs/performance/step-bench.json").read_text())
    rows = {r["op"]: r for r in record["rows"]}
    text = (ROOT / "docs/performance.md").read_text()
    found = re.findall(r"^\| (\d) \| ([\d.]+) ms \| ([\d.]+) ms \| \*\*([\d.]+)x\*\* \|$", text, re.M)
    assert sorted(f[0] for f in found) == ["1", "2"], found
    for threads, copy, into, ratio in found:
        suffix = f" 1%, {threads} thread(s)"
        copy_row = rows["copy r, v + vgc_step_scratch" + suffix]
        into_row = rows["vgc_step_scratch into a spare" + suffix]
        assert copy == f"{1e3 * copy_row['median']:.1f}" and into == f"{1e3 * into_row['median']:.1f}"
        assert ratio == f"{into_row['vs_copy_median']:.2f}", threads


def test_the_docs_twelve_percent_table_is_the_recorded_run():
    """The table of the scratch step at 12 % sent, in place and into a spare (the same
    record): medians to 0.1 ms, per thread count."""
    record = json.loads((ROOT / "docs/performance/step-bench.json").read_text())
    rows = {r["op"]: r for r in record["rows"]}
    text = (ROOT / "docs/performance.md").read_text()
    found = re.findall(r"^\| (\d) \| ([\d.]+) ms \| ([\d.]+) ms \|$", text, re.M)
    assert sorted(f[0] for f in found) == ["1", "2"], found
    for threads, in_place, into in found:
        suffix = f" 12%, {threads} thread(s)"
        assert in_place == f"{1e3 * rows['vgc_step_scratch' + suffix]['median']:.1f}", threads
        assert into == f"{1e3 * rows['vgc_step_scratch into a spare' + suffix]['median']:.1f}", threads


def test_the_docs_hook_table_is_the_recorded_run():
    """docs/performance.md's table of median steps (10 M and 1 M parameters) holds the
    medians of docs/performance/hook-bench.json, to 0.1 ms, and the VGC / PowerSGD
    ratios computed from them: the figures a reader sees are the recorded ones."""
    record = json.loads((ROOT / "docs/performance/hook-bench.json").read_text())
    median = {(r["size"], r["method"]): r["ms_per_step_median"] for r in record["rows"]}
    text = (ROOT / "docs/performance.md").read_text()
    rows = re.findall(
        r"^\| (10|1) M \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| \**([\d.]+)x\** median", text, re.M
    )
    assert sorted(r[0] for r in rows) == ["1", "10"], rows
    for size, *cells, ratio in rows:
        n = int(size) * 1_000_000
        methods = ("allreduce", "powersgd", "vgc/numba-cpu", "vgc/numpy")
        for cell, method in zip(cells, methods):
            assert cell == f"{median[n, method]:.1f}", (size, method, cell)
        assert ratio == f"{median[n, 'vgc/numba-cpu'] / median[n, 'powersgd']:.2f}", (size, ratio)
