"""docs/trace.md against the program, where a port reads it: every config key of the
header with its type and default, and the compare rule for headers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mpi_demo import cli
from mpi_demo.config import ARITHMETIC_FIELDS, EXTRA_ARITHMETIC_FIELDS, TrainConfig

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _config_table() -> dict[str, tuple[str, object]]:
    text = (DOCS / "trace.md").read_text()
    table = text.split("| key | type | default | meaning |")[1].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = (cells[1], json.loads(cells[2].strip("`")))
    return rows


def _train_defaults() -> dict[str, object]:
    parser = cli.build_parser()
    train = next(a for a in parser._subparsers._group_actions if a.dest == "command").choices["train"]
    return {a.dest: a.default for a in train._actions}


def test_every_config_key_is_documented_in_order_with_its_default():
    rows = _config_table()
    assert list(rows) == [*ARITHMETIC_FIELDS, *EXTRA_ARITHMETIC_FIELDS]
    defaults = TrainConfig()
    parser = _train_defaults()
    for key, (kind, documented) in rows.items():
        value = getattr(defaults, key)
        value = list(value) if isinstance(value, tuple) else value
        assert documented == value, f"trace.md: {key} defaults to {documented!r}, TrainConfig to {value!r}"
        assert {"string": str, "float": float, "integer": int}.get(kind, object) is object or isinstance(
            value, {"string": str, "float": float, "integer": int}[kind]
        ), f"trace.md: {key} is {kind}"
        if key in parser and key not in ("hidden", "channels"):  # those parse "128,64"
            assert parser[key] == value, f"the parser's default for --{key} is {parser[key]!r}, not {value!r}"


def test_the_header_of_a_default_run_has_exactly_the_documented_keys(tmp_path):
    from mpi_demo.train import run_training

    path = tmp_path / "t.jsonl"
    run_training(TrainConfig(samples=300, hidden=(8,), steps=3, trace=str(path), progress=False, ranks=2))
    header = json.loads(path.read_text().splitlines()[0])
    assert list(header["config"]) == list(ARITHMETIC_FIELDS)
    assert header["steps"] == 3 and header["config"]["steps"] == 3
    assert header["config"]["lr"] == 0.05  # the command-line float64, not float32(0.05)
    assert re.fullmatch(r"0\.05", json.dumps(header["config"]["lr"]))


def test_compare_header_rule(tmp_path, capsys):
    """A header difference that changes no number: notes, then exit 1 'headers differ'."""
    from mpi_demo.train import run_training

    paths = []
    for fraction in (0.01, 0.5):  # fraction is topk's: with method none it changes no number
        path = tmp_path / f"{fraction}.jsonl"
        run_training(
            TrainConfig(
                samples=300, hidden=(8,), steps=3, method="none", fraction=fraction, trace=str(path),
                progress=False, ranks=2,
            )
        )  # fmt: skip
        paths.append(path)
    a, b = (p.read_text().splitlines() for p in paths)
    assert a[1:] == b[1:] and a[0] != b[0]
    assert cli.main(["compare", str(paths[0]), str(paths[1])]) == 1
    out = capsys.readouterr().out
    assert "headers differ" in out and "config: fraction = 0.01 vs 0.5" in out
    assert cli.main(["compare", str(paths[0]), str(paths[0])]) == 0


#: Each config option with a changed value, and the methods whose numbers it changes
#: (docs/trace.md's table: "vgc, hybrid", "topk", ...; no entry: every method).
APPLIES = {
    "alpha": (4.0, {"vgc", "hybrid"}),
    "zeta": (0.5, {"vgc", "hybrid"}),
    "tau": (0.05, {"hybrid", "strom"}),
    "residual": ("reset", {"vgc", "hybrid"}),
    "fraction": (0.3, {"topk"}),
    "lr": (0.1, None),
    "lr_schedule": ("cosine", None),
    "momentum": (0.5, None),
    "weight_decay": (0.01, None),
    "seed": (3, None),
}
METHOD_DEFAULTS = {"vgc": {}, "hybrid": {"tau": 0.01}, "strom": {"tau": 0.01}, "topk": {}, "none": {}}


def _records(tmp_path, name, **fields):
    from mpi_demo.train import run_training

    path = tmp_path / f"{name}.jsonl"
    base = dict(samples=400, hidden=(8,), batch=32, epochs=1, steps=4, progress=False, ranks=2)
    run_training(TrainConfig(**{**base, **fields, "trace": str(path)}))
    return path.read_text().splitlines()[1:]


def test_every_option_changes_the_numbers_of_the_methods_it_applies_to_and_no_other(tmp_path):
    """No option is accepted and silently ignored where trace.md says it acts, and none acts
    where it says it does not."""
    for method, defaults in METHOD_DEFAULTS.items():
        reference = _records(tmp_path, method, method=method, **defaults)
        for option, (value, methods) in APPLIES.items():
            if option == "residual" and method in ("strom", "topk"):
                continue  # refused (test_demo_edges)
            if option == "tau" and method in ("vgc", "topk"):
                continue  # refused: tau > 0 with vgc is the hybrid, topk has no threshold
            changed = _records(tmp_path, f"{method}-{option}", method=method, **{**defaults, option: value})
            applies = methods is None or method in methods
            assert (changed != reference) == applies, (
                f"--{option.replace('_', '-')} {value} with --method {method} "
                + ("changes nothing" if applies else "changes the numbers, which trace.md does not say")
            )


def test_demo_md_quotes_the_parsers_defaults():
    """Every `--option value` docs/demo.md's "What is trained" gives as the demo's setting is
    the parser's default."""
    text = (DOCS / "demo.md").read_text().split("## What is trained")[1].split("## Arithmetic of one step")[0]
    pairs = re.findall(r"--([a-z][a-z0-9-]*) ([0-9][0-9.e,+-]*)", text)
    assert len(pairs) >= 8
    defaults = _train_defaults()
    for option, value in pairs:
        default = defaults[option.replace("-", "_")]
        if isinstance(default, tuple):  # --hidden 128,64
            assert tuple(int(v) for v in value.split(",")) == default, f"demo.md: --{option} {value}"
        else:
            assert float(value) == default, f"demo.md: --{option} {value}; the parser's default is {default}"
