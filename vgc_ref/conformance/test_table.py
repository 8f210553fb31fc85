"""The deterministic layer as pytest items: every case of :mod:`vgc_ref.conformance.table`
that no older property runs, one item per case (``test_rule_case[ID]``)."""

from __future__ import annotations

import pytest

from vgc_ref.conformance.table import CASES, Case

RULE_CASES = [c for c in CASES if c.prop == "test_rule_case" and not c.slow]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", RULE_CASES, ids=[c.id for c in RULE_CASES])
def test_rule_case(impl, case: Case):
    """One hand-picked input on which the implementation must agree with the reference bit
    for bit (or raise the same error, leaving every input and output untouched); the case's
    id names it and its rules say which rule of docs/algorithm.md or docs/format.md it pins
    (``python -m vgc_ref.conformance.table --list``)."""
    case.run(impl)
