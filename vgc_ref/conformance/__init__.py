"""The VGC conformance kit: a Hypothesis suite that any implementation runs on itself.

Modelled on the array API test suite: a spec (docs/algorithm.md, docs/format.md), a
strict reference (vgc_ref), and properties that compare an implementation under test
with the reference, bit for bit, on random and edge inputs. The implementation is a
module chosen by name (see :mod:`vgc_ref.conformance.adapter` for the protocol)::

    python -m vgc_ref.conformance --impl mypkg.vgc_adapter --report report.json
    python -m vgc_ref.conformance --backend numba-cpu
    VGC_IMPL=mypkg.vgc_adapter python -m pytest --pyargs vgc_ref.conformance

The suite ships inside the installed package; no checkout is needed. The properties
(one test function each, some parametrized over hand-picked cases) are listed in
:data:`PROPERTIES` and in docs/conformance.md. Every one is required: the exit status is
0 only when all of them pass.
"""

from __future__ import annotations

import os
from pathlib import Path

from vgc_ref.conformance.adapter import OPERATIONS, Impl, MissingOperationError, load_impl

#: Property (test function) -> (module, what it checks). Mirrored in docs/conformance.md.
PROPERTIES: dict[str, tuple[str, str]] = {
    "test_vgc_step_equals_reference": ("test_step", "criterion and quantization on random and edge inputs"),
    "test_vgc_step_equals_reference_on_edge_cases": ("test_step", "the same on a table of hand-picked edges"),
    "test_strom_step_equals_reference": ("test_step", "Strom's threshold step on random inputs"),
    "test_strom_step_equals_reference_on_edge_cases": ("test_step", "Strom's step on hand-picked edges"),
    "test_residual_is_exact": ("test_step", "r - q exact (feedback), r = 0 (reset), v = 0 / zeta * v"),
    "test_conservation": ("test_step", "sum of g == sum of q + r after every step"),
    "test_invalid_step_inputs_rejected_state_unchanged": (
        "test_step",
        "non-finite and invalid inputs: reference's error, state unchanged",
    ),
    "test_packets_and_message_bytes_equal_reference": (
        "test_encoding",
        "packets and messages byte-identical",
    ),
    "test_encoding_is_canonical_both_ways": (
        "test_encoding",
        "encode(p) == b, decode(b) == p, encode(decode(b)) == b",
    ),
    "test_decode_rejects_malformed_message": ("test_encoding", "every malformed-message class rejected"),
    "test_decode_accumulate_rejects_malformed_message_out_untouched": (
        "test_encoding",
        "malformed messages rejected by decode_accumulate, out untouched",
    ),
    "test_decode_agrees_with_reference_on_corrupted_messages": (
        "test_encoding",
        "random corruption: same verdict",
    ),
    "test_aggregation_equals_reference_in_rank_order": (
        "test_aggregate",
        "rank-ordered sum / P, bit for bit",
    ),
    "test_aggregation_rank_order_edge_cases": ("test_aggregate", "aggregations where the order shows"),
    "test_aggregation_rejects_bad_input_out_untouched": ("test_aggregate", "layout errors, out untouched"),
    "test_stateful_multistep_equals_reference": (
        "test_stateful",
        "many steps, state carried, vs the reference",
    ),
    "test_dense_grad_var_equals_reference": ("test_variance", "dense-layer g and s, bit for bit"),
    "test_dense_grad_var_equals_reference_on_edge_cases": (
        "test_variance",
        "the same on layers where the order of operations shows",
    ),
    "test_dense_grad_var_matches_per_sample_gradients": (
        "test_variance",
        "dense-layer variance vs per-sample",
    ),
    "test_dense_grad_var_rejects_invalid_inputs": ("test_variance", "dense-layer input errors"),
    "test_rule_case": (
        "test_table",
        "hand-picked cases, each pinning named rules (python -m vgc_ref.conformance.table)",
    ),
    "test_conv_grad_var_equals_reference": (
        "test_conv_variance",
        "convolution g and s (exact and approx), bit for bit",
    ),
    "test_conv_grad_var_equals_reference_on_edge_cases": (
        "test_conv_variance",
        "the same on layers where the order of operations shows",
    ),
    "test_conv_grad_var_matches_per_sample_gradients": (
        "test_conv_variance",
        "convolution variance (exact and approx) vs per-sample",
    ),
    "test_conv_grad_var_rejects_invalid_inputs": ("test_conv_variance", "convolution input errors"),
}

PACKAGE_DIR = Path(__file__).resolve().parent


def run(
    impl: str = "vgc_ref",
    *,
    max_examples: int | None = None,
    report: str | os.PathLike | None = None,
    derandomize: bool = False,
    shrink: bool = True,
    select: str | None = None,
    pytest_args: list[str] | None = None,
    verbose: bool = False,
) -> int:
    """Run every property against ``impl`` in this process; return the exit status.

    0 when every selected property passed, 1 when one failed, was skipped or errored,
    2 when the implementation cannot be loaded. See :mod:`vgc_ref.conformance.__main__`
    for the options.
    """
    import pytest

    from vgc_ref.conformance._report import Recorder
    from vgc_ref.conformance.conftest import DEFAULT_MAX_EXAMPLES

    max_examples = DEFAULT_MAX_EXAMPLES if max_examples is None else max_examples
    try:
        loaded = load_impl(impl)
    except Exception as exc:  # an import error of the module under test, reported plainly
        print(f"vgc_ref.conformance: cannot load implementation {impl!r}: {type(exc).__name__}: {exc}")
        return 2
    for op in loaded.missing:
        print(f"vgc_ref.conformance: {op} is not defined in {impl}")
    for op in loaded.borrowed:
        print(f"vgc_ref.conformance: {op} is the reference's (the BACKEND module {impl} does not define it)")

    os.environ["VGC_IMPL"] = impl
    os.environ["VGC_MAX_EXAMPLES"] = str(max_examples)
    os.environ["VGC_DERANDOMIZE"] = "1" if derandomize else "0"
    os.environ["VGC_NO_SHRINK"] = "0" if shrink else "1"
    args = [
        str(PACKAGE_DIR),
        "-p",
        "no:cacheprovider",
        "-c",
        os.devnull,
        "--rootdir",
        str(PACKAGE_DIR),
        "-v" if verbose else "-q",
        "-rfEs",
        "--tb=short",
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    if select:
        args += ["-k", select]
    args += list(pytest_args or [])
    recorder = Recorder()
    code = pytest.main(args, plugins=[recorder])
    summary = recorder.summary()
    meta = {
        "impl": impl,
        "missing_operations": list(loaded.missing),
        "borrowed_operations": list(loaded.borrowed),
        "max_examples": max_examples,
        "derandomize": derandomize,
        "shrink": shrink,
        "select": select,
    }
    if report is not None:
        recorder.write(report, meta)
    bad = recorder.failures()
    print(
        f"vgc_ref.conformance: {impl}: {summary['passed']} passed, {summary['failed']} failed, "
        f"{summary['error']} errors, {summary['skipped']} skipped"
    )
    if int(code) not in (0, 1) and not recorder.entries:
        return 2
    return 0 if not bad and recorder.entries and int(code) == 0 else 1


__all__ = ["OPERATIONS", "PROPERTIES", "Impl", "MissingOperationError", "load_impl", "run"]
