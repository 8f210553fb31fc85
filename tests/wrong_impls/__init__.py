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
    # Port bugs that source mutation cannot produce (docs/conformance.md, "Port bugs").
    "fma_in_criterion": "test_rule_case[vgc.fma_tie_alpha_2]",
    "fma_on_alpha_v": "test_rule_case[vgc.fma_tie_alpha_3]",
    "criterion_in_float64": "test_rule_case[vgc.fma_tie_alpha_2]",
    "alpha_in_float64": "test_rule_case[vgc.tie_alpha_rounds_down]",
    "tau_in_float64": "test_rule_case[vgc.tau_rounds_down]",
    "zeta_in_float64": "test_rule_case[vgc.zeta_rounds_down]",
    "strom_tau_in_float64": "test_rule_case[strom.tau_rounds_down]",
    "flush_subnormals": "test_rule_case[vgc.subnormal_sums_kept]",
    "aggregate_in_float64": "test_rule_case[aggregate.float64_accumulator_shows]",
    "strom_touches_v": "test_rule_case[strom.v_left_alone]",
    "out_not_checked": "test_rule_case[aggregate_bad.out_read_only]",
    "header_reserved_low_byte_only": "test_rule_case[decode.header_reserved_bit_15]",
    "segment_reserved_first_byte_only": "test_rule_case[decode.segment_reserved_bit_23]",
    "vgc_param_high_bits_ignored": "test_rule_case[decode.vgc_param_reserved_bit_31]",
    "duplicate_ids_adjacent_only": "test_rule_case[decode.duplicate_id_distance_2]",
    "content_checked_before_crc": "test_rule_case[decode.content_error_and_bad_crc]",
    "bytes_after_crc_ignored": "test_rule_case[decode.bytes_after_crc_1]",
    "encoder_no_validation": "test_rule_case[encode_invalid.vgc_E_255]",
    "s_checked_before_g": "test_rule_case[pair.vgc-g_nan+s_nan]",
    "dense_grad_var_squares_input": "test_rule_case[variance.inputs_unmodified]",
    # The convolution variance's fixed order (docs/algorithm.md section 2.1, decision 11):
    # each passes the per-sample property, whose tolerance cannot see the order.
    "conv_grad_var_float64": "test_conv_grad_var_equals_reference_on_edge_cases[no_fma-exact]",
    "conv_grad_var_blas": "test_conv_grad_var_equals_reference",
    "conv_grad_var_p_major": "test_conv_grad_var_equals_reference_on_edge_cases[rows_b_major-approx]",
    "conv_approx_square_of_product": (
        "test_conv_grad_var_equals_reference_on_edge_cases[squares_rounded_first-approx]"
    ),
    "conv_exact_samples_pairwise": (
        "test_conv_grad_var_equals_reference_on_edge_cases[samples_in_order-exact]"
    ),
}

#: Wrong implementations only a slow case can catch (n = 2^27): module -> table case id.
#: tests/test_conformance_kit.py runs them with ``python -m vgc_ref.conformance.table --slow``.
SLOW_EXPECTED = {
    "index_field_26_bits": "slow.max_index_step",
}
