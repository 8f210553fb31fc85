"""Deliberately wrong implementations: the conformance kit must reject every one.

Each module is the reference with one bug. :data:`EXPECTED` maps the module to the
property (test id, as in the kit's report) that must be among its failures; the module
docstring says what the bug is. tests/test_conformance_kit.py runs the kit on each.
"""

EXPECTED = {
    "ge_instead_of_gt": "test_vgc_step_equals_reference_on_edge_cases[tie_at_threshold]",
    "decay_applied_to_sent": "test_residual_is_exact",
    "wrong_rounding_constant": "test_vgc_step_equals_reference_on_edge_cases[sqrt2_rounding]",
    "k16_sent": "test_vgc_step_equals_reference_on_edge_cases[k_15_and_16]",
    "no_exponent_clamp": "test_vgc_step_equals_reference_on_edge_cases[near_float32_max]",
    "reset_ignored": "test_vgc_step_equals_reference_on_edge_cases[reset_mode]",
    "strom_gt_instead_of_ge": "test_strom_step_equals_reference_on_edge_cases[tie_at_tau]",
    "state_written_before_validation": "test_invalid_step_inputs_rejected_state_unchanged[vgc-s_nan]",
    "last_bad_index_reported": "test_invalid_step_inputs_rejected_state_unchanged[vgc-g_nan]",
    "words_big_endian": "test_encoding_is_canonical_both_ways",
    "index_off_by_one": "test_decode_rejects_malformed_message[vgc_index_equals_n]",
    "no_crc_check": "test_decode_rejects_malformed_message[crc_mismatch]",
    "accepts_unsorted_indices": "test_decode_rejects_malformed_message[vgc_indices_decreasing]",
    "out_written_before_validation": (
        "test_decode_accumulate_rejects_malformed_message_out_untouched[crc_mismatch]"
    ),
    "sum_in_reverse_rank_order": "test_aggregation_rank_order_edge_cases[rank_order_matters]",
    "accumulator_from_first_rank": "test_aggregation_rank_order_edge_cases[negative_zero_never_survives]",
    "multiply_by_reciprocal_of_p": "test_aggregation_rank_order_edge_cases[divide_by_P]",
    "variance_square_of_sum": "test_dense_grad_var_matches_per_sample_gradients",
    "dense_grad_var_blas": "test_dense_grad_var_equals_reference_on_edge_cases[blas_order]",
    "dense_grad_var_fma": "test_dense_grad_var_equals_reference_on_edge_cases[no_fma]",
}
