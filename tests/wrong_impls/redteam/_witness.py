"""Run every red-team wrong implementation's witness against the correct port.

    python tests/wrong_impls/redteam/_witness.py [name ...]     (tests/test_redteam.py runs it)

For each module of this folder (or each name given), the witness input is run through
_port.py (the correct port) and through the wrong module, on fresh copies of every input; the
outcome compared is: the returned value (bit patterns of arrays, packets field by field,
message bytes) or the exception class and its attributes (all but the free-text `reason`
and `value`), plus the state arrays the caller holds, and every input after the call.
Prints DIFFERS name or SAME name, and a summary line.
"""

import importlib
import os
import struct
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # tests/: the wrong_impls package

from vgc_ref import Codec, Packet, SegmentState, StromParams, VGCParams  # noqa: E402
from wrong_impls.redteam._base import fresh  # noqa: E402

correct = fresh("correct")

F32, U32 = np.float32, np.uint32


# ----------------------------------------------------------------------------- normalisation
def norm(x):
    if isinstance(x, Packet):
        return (
            "Packet",
            int(x.segment_id),
            int(x.n),
            int(x.codec),
            int(x.param),
            x.words.astype("<u4").tobytes().hex(),
        )
    if isinstance(x, np.ndarray):
        return ("ndarray", str(x.dtype), x.shape, np.ascontiguousarray(x).tobytes().hex())
    if isinstance(x, (bytes, bytearray, memoryview)):
        return (type(x).__name__, bytes(x).hex())
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [norm(y) for y in x])
    if isinstance(x, np.generic):
        return ("scalar", str(x.dtype), x.tobytes().hex())
    return x


def outcome(thunk):
    with np.errstate(all="ignore"):
        try:
            return ("returned", norm(thunk()))
        except Exception as e:
            attrs = {k: norm(v) for k, v in sorted(vars(e).items()) if k not in ("reason", "value")}
            return ("raised", type(e).__name__, attrs)


def f32(*v):
    return np.array(v, F32)


# ----------------------------------------------------------------------------- step cases
def vgc_case(g, s, r0=None, v0=None, seg=0, **params):
    g = np.asarray(g) if not isinstance(g, np.ndarray) else g
    n = len(g) if hasattr(g, "__len__") else 1

    def run(impl):
        r = f32(*([0.0] * n)) if r0 is None else np.array(r0, F32)
        v = f32(*([0.0] * n)) if v0 is None else np.array(v0, F32)
        st = SegmentState(seg, r, v)
        gg, ss = _copy(g), _copy(s)
        res = outcome(lambda: impl.vgc_step(st, gg, ss, VGCParams(**params)))
        return res, norm(r), norm(v), norm(st.r), norm(st.v), norm(gg), norm(ss)

    return run


def strom_case(g, tau, r0=None, v0=None, seg=0):
    def run(impl):
        n = len(g)
        r = np.zeros(n, F32) if r0 is None else np.array(r0, F32)
        v = np.zeros(n, F32) if v0 is None else np.array(v0, F32)
        st = SegmentState(seg, r, v)
        gg = _copy(g)
        res = outcome(lambda: impl.strom_step(st, gg, StromParams(tau)))
        return res, norm(r), norm(v), norm(st.r), norm(st.v), norm(gg)

    return run


def _copy(a):
    if isinstance(a, np.ndarray):
        if a.base is not None and not a.flags.c_contiguous:  # keep strided views strided
            return np.array(a.base, copy=True)[:: a.strides[0] // a.itemsize]
        c = a.copy()
        c.setflags(write=a.flags.writeable)
        return c
    return a


def call(fname, *args, **kw):
    """Generic: fresh copies of array/bytearray args; outcome plus args after the call."""

    def run(impl):
        a2 = [_deep(a) for a in args]
        kw2 = {k: _deep(v) for k, v in kw.items()}
        res = outcome(lambda: getattr(impl, fname)(*a2, **kw2))
        return res, [norm(a) for a in a2], {k: norm(v) for k, v in kw2.items()}

    return run


def _deep(a):
    if isinstance(a, np.ndarray):
        return _copy(a)
    if isinstance(a, bytearray):
        return bytearray(a)
    if isinstance(a, list):
        return [_deep(x) for x in a]
    return a


# ----------------------------------------------------------------------------- message builders
def vq(sid, n, E, words):
    return Packet(sid, n, Codec.VGC_Q4, E, np.array([i << 5 | s << 4 | k for i, s, k in words], U32))


def st(sid, n, tau, words):
    return Packet(sid, n, Codec.STROM, int(F32(tau).view(U32)), np.array([i << 1 | s for i, s in words], U32))


def de(sid, values):
    return Packet(sid, len(values), Codec.DENSE, 0, np.array(values, F32).view(U32))


def enc(*packets):
    return correct.encode_message(list(packets))


def raw(segs, reserved=0, good_crc=True, version=1):
    """Hand-assembled message; segs = [(sid, n, codec, param, [words])]."""
    b = b"VGCM" + struct.pack("<HHI", version, reserved, len(segs))
    for sid, n, codec, param, words in segs:
        b += struct.pack("<IIB3sII", sid, n, codec, b"\0\0\0", param, len(words))
        b += np.array(words, "<u4").tobytes()
    crc = zlib.crc32(b) & 0xFFFFFFFF
    return b + struct.pack("<I", crc if good_crc else crc ^ 1)


def rnd(seed, *shape_list):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(F32) for s in shape_list]


SQRT2_32 = F32(np.sqrt(2.0))
VALID = enc(vq(0, 4, 130, [(0, 0, 0), (2, 1, 3)]), st(1, 3, 0.5, [(1, 1)]), de(2, [1.5, -0.0]))
TRUNC = VALID[:-1]

# ----------------------------------------------------------------------------- the witnesses
W = {}
# dense variance
W["dense_fma"] = call("dense_grad_var", *rnd(1, (3, 4), (3, 5)))
W["dense_f64_accumulator"] = call("dense_grad_var", *rnd(2, (6, 4), (6, 5)))
W["dense_pairwise_sum"] = call("dense_grad_var", *rnd(3, (8, 3), (8, 3)))
W["dense_reverse_order"] = call("dense_grad_var", f32([2.0**24], [1], [1]), f32([1], [1], [1]))
W["dense_blocked_k4"] = call(
    "dense_grad_var", f32([2.0**24], [1], [1], [1], [1], [1], [1], [1]), np.ones((8, 1), F32)
)
W["dense_square_of_product"] = call("dense_grad_var", *rnd(4, (3, 4), (3, 4)))
W["dense_ftz_squares"] = call("dense_grad_var", f32([1e-20]), f32([1.0]))
W["dense_acc_from_first_term"] = call("dense_grad_var", f32([-1.0]), f32([0.0]))
W["dense_sb_square_of_sum"] = call("dense_grad_var", f32([1.0], [1.0]), f32([1.0], [-1.0]))
W["dense_batch_mismatch_names_x"] = call("dense_grad_var", np.ones((2, 3), F32), np.ones((3, 2), F32))
W["dense_empty_batch_ok"] = call("dense_grad_var", np.ones((0, 3), F32), np.ones((0, 2), F32))
W["dense_casts_float64"] = call("dense_grad_var", np.ones((2, 2)), np.ones((2, 2), F32))
# conv variance
W["conv_rows_p_major"] = call(
    "conv_grad_var", np.array([[[2.0**24], [1]], [[-(2.0**24)], [0]]], F32), np.ones((2, 2, 1), F32), "exact"
)
W["conv_exact_bias_as_approx"] = call(
    "conv_grad_var", np.ones((1, 2, 1), F32), np.ones((1, 2, 1), F32), "exact"
)
W["conv_exact_G_float64"] = call("conv_grad_var", *rnd(6, (2, 5, 3), (2, 5, 2)), "exact")
W["conv_approx_square_of_product"] = call(
    "conv_grad_var", np.full((1, 1, 1), 1e20, F32), np.full((1, 1, 1), 1e-20, F32), "approx"
)
W["conv_default_approx"] = call("conv_grad_var", np.ones((1, 2, 1), F32), np.ones((1, 2, 1), F32))
W["conv_form_hyperparameter_error"] = call(
    "conv_grad_var", np.ones((1, 2, 1), F32), np.ones((1, 2, 1), F32), "fast"
)
W["conv_refuses_nonfinite"] = call(
    "conv_grad_var", np.full((1, 1, 1), 1e20, F32), np.full((1, 1, 1), 1e-25, F32), "approx"
)
# criterion
W["crit_non_strict"] = vgc_case(f32(1.0), f32(0.5), alpha=2.0)
W["crit_fma"] = vgc_case(f32(1 + 2.0**-12), f32(1 + 2.0**-11), alpha=1.0)
W["crit_float64_products"] = vgc_case(f32(F32("1.5059366")), f32(F32("0.75594836")), alpha=3.0)
W["alpha_unconverted"] = vgc_case(f32(F32("3.13198")), f32(F32("98.09298")), alpha=0.1)
W["zeta_unconverted"] = vgc_case(f32(0.0), f32(F32("96.20406")), zeta=0.999)
W["tau_strict"] = vgc_case(f32(0.75), f32(0.0), tau=0.75)
W["tau_on_gradient"] = vgc_case(f32(0.5), f32(0.0), r0=[0.5], tau=0.75)
# quantization
W["round_mantissa_gt"] = vgc_case(f32(SQRT2_32), f32(0.0))
W["round_linear_midpoint"] = vgc_case(f32(1.45), f32(0.0))
W["k_saturated_not_held"] = vgc_case(f32(1.0, 2.0**-20), f32(0.0, 0.0))
W["round_no_clamp"] = vgc_case(f32(3.3e38), f32(0.0))
W["tau_on_quantized_value"] = vgc_case(f32(1.3), f32(0.0), tau=1.2)
W["k_limit_14"] = vgc_case(f32(1.0, 2.0**-15), f32(0.0, 0.0))
W["exponent_base_over_all_elements"] = vgc_case(f32(0.0, 1.0), f32(0.0, 0.0), r0=[8.0, 0.0], v0=[1000.0, 0.0])
W["reset_negative_zero"] = vgc_case(f32(-1.3), f32(0.0), residual="reset")
W["decay_before_accumulate"] = vgc_case(f32(0.0), f32(1.0), v0=[1.0], zeta=0.5)
W["decay_skips_held_candidates"] = vgc_case(f32(1.0, 2.0**-20), f32(0.0, 1e-13), zeta=0.5)
# state and validation
W["state_rebound"] = vgc_case(f32(1.3), f32(0.0))
W["state_written_before_s_checked"] = vgc_case(f32(1.0), f32(np.nan))
W["overflow_checked_before_s"] = vgc_case(f32(3e38), f32(np.nan), r0=[3e38])
W["error_index_last"] = vgc_case(f32(np.nan, 0.0, np.inf), f32(0.0, 0.0, 0.0))
W["negative_zero_variance_rejected"] = vgc_case(f32(1.0), f32(-0.0))
W["error_segment_zero"] = vgc_case(f32(np.nan), f32(0.0), seg=7)
W["overflow_name_g"] = vgc_case(f32(3e38), f32(0.0), r0=[3e38])
W["casts_float64_gradient"] = vgc_case(np.array([1.0]), f32(0.0))
W["rejects_strided_gradient"] = vgc_case(np.arange(8, dtype=F32)[::2], np.zeros(4, F32))
_ro = f32(1.0)
_ro.setflags(write=False)
W["rejects_readonly_gradient"] = vgc_case(_ro, f32(0.0))
W["gradient_modified"] = vgc_case(f32(0.25), f32(0.0), r0=[1.0])
# Strom
W["strom_strict"] = strom_case(f32(0.5), 0.5)
W["strom_tau_float64"] = strom_case(f32(F32(0.7)), 0.7)
W["strom_zeroes_v"] = strom_case(f32(1.0), 0.5, v0=[7.0])
W["strom_sign_from_gradient"] = strom_case(f32(-0.25), 0.5, r0=[1.0])
# encoder / format
W["crc_big_endian"] = call("encode_message", [])
W["crc_skips_header"] = call("encode_message", [])
W["magic_as_u32"] = call("encode_message", [])
W["segments_sorted_by_id"] = call("encode_message", [vq(2, 1, 0, []), vq(1, 1, 0, [])])
W["no_k0_rule"] = call("encode_message", [vq(0, 4, 130, [(0, 0, 1)])])
W["encoder_allows_duplicate_ids"] = call("encode_message", [vq(0, 1, 0, []), vq(0, 1, 0, [])])
W["encoder_error_name_unqualified"] = call("encode_message", [vq(0, 1, 0, []), vq(1, 2, 130, [(5, 0, 0)])])
W["strom_subnormal_tau_rejected"] = call("encode_message", [Packet(0, 1, Codec.STROM, 1, np.zeros(0, U32))])
# decoder
W["crc_checked_first"] = call("decode_message", VALID[:-4])
W["content_before_crc"] = call("decode_message", raw([(0, 2**27 + 1, 0, 0, [])], good_crc=False))
W["header_reserved_ignored"] = call("decode_message", raw([], reserved=1))
W["word_checks_one_pass"] = call("decode_message", raw([(0, 4, 1, 3, [0 << 5 | 3, 9 << 5 | 0])]))
W["k0_rule_before_words"] = call("decode_message", raw([(0, 4, 1, 130, [0 << 5 | 1, 9 << 5 | 1])]))
W["duplicate_id_earlier_offset"] = call("decode_message", raw([(5, 0, 0, 0, []), (5, 0, 0, 0, [])]))
W["trailing_bytes_ignored"] = call("decode_message", VALID + b"\0\0\0")
W["vgc_E_without_words_accepted"] = call("decode_message", raw([(0, 1, 1, 5, [])]))
W["dense_inf_accepted"] = call("decode_message", raw([(0, 1, 0, 0, [0x7F800000])]))
W["memoryview_rejected"] = call("decode_message", memoryview(VALID))
W["strom_index_masked_27"] = call("decode_message", raw([(0, 4, 2, 0x3F800000, [0x80000002])]))


def _alias(impl):
    buf = bytearray(VALID)
    with np.errstate(all="ignore"):
        packets = impl.decode_message(buf)
    buf[32:36] = b"\x20\x00\x00\x00"  # the caller reuses its receive buffer
    return norm(packets), norm(buf)


W["decoded_words_alias_buffer"] = _alias

# aggregation
R124 = [enc(de(0, [1.0])), enc(de(0, [2.0])), enc(de(0, [4.0]))]
BIG = [enc(de(0, [2.0**24])), enc(de(0, [1.0])), enc(de(0, [1.0]))]
W["agg_divide_each_rank"] = call("decode_accumulate", R124, [1])
W["agg_multiply_reciprocal"] = call("decode_accumulate", R124, [1])
W["agg_reverse_rank_order"] = call("decode_accumulate", BIG, [1])
W["agg_init_from_rank0"] = call("decode_accumulate", [enc(de(0, [-0.0]))], [1])
W["agg_float64_sum"] = call("decode_accumulate", BIG, [1])
W["agg_no_rank_attribute"] = call("decode_accumulate", [VALID, TRUNC], [4, 3, 2])
W["agg_last_bad_rank_reported"] = call("decode_accumulate", [b"XGCM" + VALID[4:], TRUNC], [4, 3, 2])
W["agg_layout_checked_per_rank"] = call(
    "decode_accumulate", [enc(de(0, [1.0])), enc(de(0, [1.0]), de(1, [1.0]))[:-1]], [1, 1]
)
W["agg_out_checked_lazily"] = call(
    "decode_accumulate",
    [enc(de(0, [1.0, 2.0]), de(1, [3.0]))],
    [2, 1],
    out=[np.full(2, 9, F32), np.full(1, 9.0)],
)


def _out_identity(impl):
    out = [np.full(2, 9, F32), np.full(1, 9, F32)]
    with np.errstate(all="ignore"):
        res = impl.decode_accumulate([enc(de(0, [1.0, 2.0]), de(1, [3.0]))], [2, 1], out=out)
    return [r is o for r, o in zip(res, out)], norm(out)


W["agg_out_not_returned"] = _out_identity


def _out_rebind(impl):
    out = [np.full(2, 9, F32), np.full(1, 9, F32)]
    arrays = list(out)
    res = outcome(lambda: impl.decode_accumulate([enc(de(0, [1.0, 2.0]), de(1, [3.0]))], [2, 1], out=out))
    return res, norm(arrays)


W["agg_out_rebound"] = _out_rebind
W["agg_unknown_segment_ignored"] = call("decode_accumulate", [enc(de(0, [1.0, 2.0]), de(1, [3.0]))], [2])
W["agg_missing_segment_is_zero"] = call("decode_accumulate", [enc(de(0, [1.0, 2.0]))], [2, 1])
W["agg_no_messages_nan"] = call("decode_accumulate", [], [2])

# added in a second pass
W["tau_compared_squared"] = vgc_case(f32(F32("9.999999e-21")), f32(0.0), tau=1e-20)
W["strom_tau_ftz"] = strom_case(f32(0.0), 1e-40)
W["dense_rejects_empty_features"] = call("dense_grad_var", np.ones((2, 0), F32), np.ones((2, 2), F32))
W["zero_length_segment_rejected"] = vgc_case(np.zeros(0, F32), np.zeros(0, F32))


def _strip(impl):
    buf = bytearray(VALID)
    res = outcome(lambda: impl.decode_message(buf))
    return res, norm(buf)


W["decoder_strips_caller_buffer"] = _strip
W["crc_aligned_to_8"] = call("encode_message", [vq(0, 1, 127, [(0, 0, 0)])])
W["version_reserved_read_as_u32"] = call("decode_message", raw([], reserved=1))
W["count_checked_before_param"] = call("decode_message", raw([(0, 1, 1, 0, [0, 32])]))
W["codec_checked_before_n"] = call("decode_message", raw([(0, 2**27 + 1, 5, 0, [])]))

W["s_checks_single_pass"] = vgc_case(f32(1.0, 1.0, 1.0), f32(0.0, -1.0, np.nan))


# ----------------------------------------------------------------------------- driver
def main(names):
    all_names = sorted(f[:-3] for f in os.listdir(HERE) if f.endswith(".py") and not f.startswith("_"))
    names = names or all_names
    differ = same = missing = 0
    for name in names:
        if name not in W:
            print(f"NOWITNESS {name}")
            missing += 1
            continue
        wrong = importlib.import_module(f"wrong_impls.redteam.{name}")
        a, b = W[name](correct), W[name](wrong)
        if a != b:
            differ += 1
            print(f"DIFFERS {name}")
        else:
            same += 1
            print(f"SAME {name}")
    extra = sorted(set(W) - set(all_names))
    print(
        f"summary: {differ} DIFFERS, {same} SAME, {missing} without witness, of {len(names)}"
        + (f"; witnesses without module: {extra}" if extra else "")
    )
    return 0 if same == 0 and missing == 0 and not extra else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
