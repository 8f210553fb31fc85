"""An adapter without an operation: every case of that operation says "X is not defined in MODULE"."""

from __future__ import annotations

import pytest

from vgc_ref.conformance.adapter import OPERATIONS, load_impl
from vgc_ref.conformance.table import CASES, run_case

ALL = "vgc_step, strom_step, encode_message, decode_message, decode_accumulate, dense_grad_var, conv_grad_var"


@pytest.mark.parametrize("missing", OPERATIONS)
def test_a_missing_operation_is_named_in_every_case_that_uses_it(tmp_path, missing):
    """Every table case fails with the documented sentence, not with an error of the kit
    (an UnboundLocalError once came out of the step comparison), and the others pass."""
    names = [op for op in ALL.split(", ") if op != missing]
    module = tmp_path / f"without_{missing}.py"
    module.write_text(f"from vgc_ref import {', '.join(names)}\n")
    impl = load_impl(str(module))
    assert list(impl.missing) == [missing]
    failed = 0
    for case in CASES:
        if case.slow or "largest_segment" in case.id:  # 2^27 elements: a minute each
            continue
        message = run_case(impl, case)
        if message is None:
            continue
        failed += 1
        assert f"{missing} is not defined in {module}" in message, (case.id, message)
        assert "unexpected" not in message, (case.id, message)
    assert failed > 0, f"no case uses {missing}"
