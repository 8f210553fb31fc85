"""The README's demo tables are what the demo prints (simulated ranks give the mpiexec trace).

Each table in README.md that starts with the ``method  test acc`` header is the summary of
one demo run, without the timing columns; the runs are listed here in README order.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mpi_demo import cli
from mpi_demo.config import TrainConfig
from mpi_demo.train import run_training

ROOT = Path(__file__).resolve().parents[1]
#: The README's tables in order: the options of `make demo` (4 ranks, --compare none).
RUNS = [
    {},  # make demo
    {"dataset": "mnist1d", "model": "cnn"},  # make demo DEMO_ARGS="--dataset mnist1d --model cnn"
]
#: Width of the columns the README keeps: method, test acc, ratio, sent, bytes/step.
KEPT = 2 + 40 + 1 + 8 + 1 + 8 + 1 + 8 + 1 + 10


def _readme_tables() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```\n(  method +test acc.*?)```", text, flags=re.S)
    return [block.rstrip("\n").split("\n") for block in blocks]


def test_readme_has_one_table_per_listed_run():
    assert len(_readme_tables()) == len(RUNS)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(RUNS)))
def test_readme_table_is_what_the_demo_prints(index):
    config = TrainConfig(ranks=4, progress=False, **RUNS[index])
    results = [(cfg, run_training(cfg)) for cfg in (config, cli.baseline_of(config))]
    lines = cli._summary(results, config)[1:]  # without the "summary:" line
    printed = [line[:KEPT].rstrip() for line in lines[:-1]] + [lines[-1]]
    assert printed == _readme_tables()[index]
