"""The kit's fast deterministic layer: tables of hand-picked cases, each tagged with the rules
it pins, run in seconds without Hypothesis.

Every case is one call of the implementation under test beside the reference on fixed
inputs (a step, a decode, an encode, an aggregation, a dense layer), compared bit for bit
with :mod:`vgc_ref.conformance.compare`. The cases are where a port is most likely to
differ: ties of the criterion whose products round, hyperparameters whose float32 value
rounds down or up, subnormals, every reserved bit of every field, every rejection rule of
docs/format.md alone and in pairs, every validation rule of a step alone and in pairs,
bad ``out`` arrays, inputs that must come back unmodified.

Run it on its own (this is what ``make mutation`` runs against every mutant)::

    python -m vgc_ref.conformance.table --impl mypkg.vgc_adapter        # every case
    python -m vgc_ref.conformance.table --impl mypkg.vgc_adapter -k fma # ids containing "fma"
    python -m vgc_ref.conformance.table --case criterion.fma_tie_alpha_2 --impl ...  # one case
    python -m vgc_ref.conformance.table --list                          # ids and rules
    python -m vgc_ref.conformance.table --coverage                      # rule -> cases table

The full kit (``python -m vgc_ref.conformance``) runs the same cases as pytest items:
the hand-picked tables it always had under their old property names, the rest as
``test_rule_case[ID]``.

Rule tags: ``algorithm:3.N`` is step N of "One step on one segment" in docs/algorithm.md
(``algorithm:4`` Strom, ``algorithm:7`` aggregation, ``algorithm:2`` the dense layer),
``decision:N`` the N-th entry of its "Decisions of this project", ``format:N`` check N of
"What a decoder rejects" in docs/format.md (``format:encoder``: the encoder applies the
content rules; ``format:canonical``: one list of packets has one byte string),
``error:N`` row N of the error table in docs/conformance.md.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import vgc_ref as ref
from vgc_ref.conformance import variance_cases
from vgc_ref.conformance.cases import (
    AGGREGATE_EDGE_CASES,
    BAD_AGGREGATIONS,
    DENSE_SEG,
    F32_MAX,
    F32_SUB,
    F32_TINY,
    MALFORMED_MESSAGES,
    STROM_EDGE_CASES,
    STROM_SEG,
    VALID_SIZES,
    VGC_EDGE_CASES,
    VGC_SEG,
    AggregateCase,
    StepCase,
    f32_bits,
    raw_message,
    seg,
    strom_word,
    valid_message,
    vgc_word,
)
from vgc_ref.conformance.compare import (
    array_text,
    assert_bits_equal,
    assert_bytes_equal,
    assert_packets_equal,
    assert_same_outcome,
    call,
    compare_grad_var,
    compare_step,
)

f32 = np.float32


@dataclass(frozen=True)
class Case:
    """One deterministic check: ``run(impl)`` raises AssertionError when ``impl`` differs."""

    id: str
    rules: tuple[str, ...]
    run: Callable
    why: str = ""
    #: The pytest property that runs it (the older tables keep their own properties; the
    #: rest run as ``test_rule_case[ID]``).
    prop: str = "test_rule_case"
    slow: bool = False


# --------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------


def _step_run(kind: str, case: StepCase, segment_id: int):
    def run(impl):
        r, v, g, s = case.arrays()
        params = ref.VGCParams(**case.params) if kind == "vgc" else ref.StromParams(**case.params)
        try:
            compare_step(impl, kind, r, v, g, s, params, segment_id)
        except AssertionError as err:
            raise AssertionError(f"{err}\n  case {case.name}: {case.why}") from None

    return run


#: Rules pinned by the step tables of cases.py (the golden vectors' source).
EDGE_RULES = {
    "empty_segment": ("algorithm:3.4", "algorithm:1"),
    "nothing_sent": ("algorithm:3.5", "algorithm:3.2"),
    "everything_sent": ("algorithm:3.2", "algorithm:3.5"),
    "tie_at_threshold": ("algorithm:3.2", "decision:6"),
    "tie_at_threshold_alpha_rounded": ("algorithm:3.2", "decision:3"),
    "tau_tie": ("algorithm:3.2", "algorithm:3.hybrid"),
    "k_15_and_16": ("algorithm:3.4", "decision:5"),
    "k_boundary_after_rounding": ("algorithm:3.3", "algorithm:3.4"),
    "sqrt2_rounding": ("algorithm:3.3", "decision:4"),
    "subnormals": ("algorithm:3.3", "decision:6"),
    "r_squared_underflow": ("algorithm:3.2",),
    "r_squared_overflow": ("algorithm:3.2",),
    "near_float32_max": ("algorithm:3.3", "decision:4"),
    "signed_zeros": ("algorithm:3.1",),
    "accumulate_rounding": ("algorithm:3.1",),
    "decay_held_and_reset_sent": ("algorithm:3.5",),
    "zeta_zero": ("algorithm:3.5",),
    "reset_mode": ("algorithm:3.5", "decision:7"),
    "feedback_residual": ("algorithm:3.5", "decision:7"),
}
STROM_RULES = ("algorithm:4", "decision:8")


def _tie_elements(alpha: float, n: int, seed: int, wrong: list[Callable]) -> tuple[list, list]:
    """(r, v) near the tie r*r == alpha*v, chosen so each emulated wrong criterion in ``wrong``
    decides differently from the float32 one on at least two elements (and the rest ties)."""
    rng = np.random.default_rng(seed)
    a32 = f32(alpha)
    picked_r: list = []
    picked_v: list = []
    need = {i: 2 for i in range(len(wrong))}
    for _ in range(20000):
        if len(picked_r) >= n:
            break
        r = f32(variance_cases.normal(rng, 1)[0])
        t = r * r  # float32, rounded
        v0 = f32(t / a32)
        for step in (0, -1, 1, -2, 2):
            v = f32(np.nextafter(v0, f32(np.inf)) if step > 0 else v0)
            for _ in range(abs(step) - (1 if step > 0 else 0)):
                v = np.nextafter(v, f32(np.inf) if step > 0 else f32(0))
            right = bool(r * r > a32 * v)
            diffs = [i for i, w in enumerate(wrong) if bool(w(r, v, alpha)) != right]
            done = not any(x > 0 for x in need.values())
            if any(need[i] > 0 for i in diffs) or done or (not diffs and len(picked_r) < n // 4):
                for i in diffs:
                    need[i] -= 1
                picked_r.append(float(r))
                picked_v.append(float(v))
                break
    assert not any(x > 0 for x in need.values()), f"no tie case found for alpha={alpha}"
    return picked_r, picked_v


def _fma_rr(r, v, alpha):
    """fma(r, r, -(alpha*v)) > 0, exactly: r*r is exact in float64."""
    r64 = np.float64(r)
    return r64 * r64 - np.float64(f32(alpha) * v) > 0


def _fma_av(r, v, alpha):
    """fma(alpha, v, -(r*r)) < 0, exactly."""
    return np.float64(f32(alpha)) * np.float64(v) - np.float64(r * r) < 0


def _products_f64(r, v, alpha):
    return np.float64(r) * np.float64(r) > np.float64(f32(alpha)) * np.float64(v)


def _alpha_f64(r, v, alpha):
    return np.float64(r * r) > np.float64(alpha) * np.float64(v)


WRONG_CRITERIA = [_fma_rr, _fma_av, _products_f64, _alpha_f64]


def _tie_case(name, alpha, seed, why, wrong=WRONG_CRITERIA):
    r, v = _tie_elements(alpha, 16, seed, list(wrong))
    return StepCase(name, r, [0.0] * len(r), v, [0.0] * len(r), {"alpha": alpha}, why=why)


def _near(x: float, ulps: int) -> float:
    y = f32(x)
    for _ in range(abs(ulps)):
        y = np.nextafter(y, f32(np.inf) if ulps > 0 else f32(-np.inf))
    return float(y)


TAU_DOWN = 0.7  # float32(0.7) < 0.7
TAU_UP = 0.1  # float32(0.1) > 0.1
NEW_VGC_CASES = [
    (
        _tie_case(
            "fma_tie_alpha_2",
            2.0,
            1,
            "r random, v = fl(r*r)/2: alpha*v == fl(r*r) ties; exact r*r (FMA, float64) does not",
            (_fma_rr, _products_f64),
        ),
        ("algorithm:3.2", "decision:3", "decision:6"),
    ),
    (
        _tie_case(
            "fma_tie_alpha_3",
            3.0,
            2,
            "alpha*v rounds too: FMA on either product differs",
            (_fma_rr, _fma_av, _products_f64),
        ),
        ("algorithm:3.2", "decision:3"),
    ),
    (
        _tie_case("tie_alpha_rounds_up", 0.1, 3, "float32(0.1) > 0.1: alpha kept in float64 differs"),
        ("algorithm:3.2", "decision:3"),
    ),
    (
        _tie_case("tie_alpha_rounds_down", 0.7, 4, "float32(0.7) < 0.7: alpha kept in float64 differs"),
        ("algorithm:3.2", "decision:3"),
    ),
    (
        StepCase(
            "zeta_rounds_down",
            [0.0] * 6,
            [0.0] * 6,
            [1.0, 3.0, 0.1, 7.5, 1e30, 2.0**-100],
            [0.0, 0.5, 0.2, 0.0, 1e30, 0.0],
            {"zeta": 0.9},
            why="held: v = zeta32 * v, zeta32 = float32(0.9) < 0.9 (not 0.9 in float64)",
        ),
        ("algorithm:3.5", "decision:3"),
    ),
    (
        StepCase(
            "zeta_rounds_up",
            [0.0] * 5,
            [0.0] * 5,
            [1.0, 3.0, 0.1, 7.5, 1e30],
            [0.0, 0.5, 0.2, 0.0, 1e30],
            {"zeta": 0.1},
            why="float32(0.1) > 0.1",
        ),
        ("algorithm:3.5", "decision:3"),
    ),
    (
        StepCase(
            "zeta_one",
            [0.0, 1.0, 0.5],
            [0.0] * 3,
            [3.0, 1e38, 0.25],
            [1.0, 1e38, 0.0],
            {"zeta": 1.0},
            why="zeta = 1: v keeps growing by s (v + s near float32 max stays finite)",
        ),
        ("algorithm:3.5",),
    ),
    (
        StepCase(
            "tau_rounds_down",
            [float(f32(TAU_DOWN)), _near(TAU_DOWN, -1), -float(f32(TAU_DOWN)), 1.0],
            [0.0] * 4,
            params={"tau": TAU_DOWN},
            why="hybrid: |r| == float32(0.7) is sent (float64 tau 0.7 would hold it)",
        ),
        ("algorithm:3.2", "algorithm:3.hybrid", "decision:3"),
    ),
    (
        StepCase(
            "tau_tiny",
            [F32_SUB, F32_TINY, -(2.0**-120), 0.0, 1.0],
            [0.0] * 5,
            params={"tau": F32_SUB},
            why="hybrid, tau = the smallest subnormal: only zeros fail the floor",
        ),
        ("algorithm:3.hybrid",),
    ),
    (
        StepCase(
            "tau_huge",
            [F32_MAX, -F32_MAX, _near(F32_MAX, -1), 1.0],
            [0.0] * 4,
            params={"tau": F32_MAX},
            why="hybrid, tau = float32 max: only |r| == max passes",
        ),
        ("algorithm:3.hybrid",),
    ),
    (
        StepCase(
            "alpha_tiny",
            [2.0**-70, 1.0, -(2.0**-60), 2.0**-75],
            [0.0] * 4,
            [1.0, 1e30, F32_MAX, 1e-30],
            [0.0] * 4,
            {"alpha": F32_SUB},
            why="alpha = 2^-149: alpha*v is subnormal or 0",
        ),
        ("algorithm:3.2",),
    ),
    (
        StepCase(
            "alpha_huge",
            [1e19, F32_MAX, 1.0, 1e-19],
            [0.0] * 4,
            [1.0, 1.0, 2.0**-126, F32_SUB],
            [0.0] * 4,
            {"alpha": F32_MAX},
            why="alpha = float32 max: alpha*v overflows to inf (never exceeded) or stays finite",
        ),
        ("algorithm:3.2",),
    ),
    (
        StepCase(
            "subnormal_sums_kept",
            [F32_SUB, -(2.0**-140), 2.0**-127, 1.0],
            [F32_SUB, 2.0**-141, -(2.0**-128), 0.0],
            [F32_SUB, 2.0**-130, 0.0, 1.0],
            [F32_SUB, 2.0**-131, 2.0**-127, 0.0],
            {"zeta": 0.5},
            why="subnormal sums and products are kept, never flushed to zero",
        ),
        ("algorithm:3.1", "algorithm:3.2", "algorithm:3.5"),
    ),
    (
        StepCase(
            "r_squared_subnormal_sent",
            [2.0**-70, -(2.0**-72), 2.0**-80],
            [0.0] * 3,
            why="r*r is subnormal (> 0 = alpha*v): sent; flushed to zero it would be held",
        ),
        ("algorithm:3.2",),
    ),
    (
        StepCase(
            "k_clamped_and_e_254",
            [F32_MAX, 2.0**113, 2.0**112, -(2.0**114), 2.0**127],
            [0.0] * 5,
            why="E = 254 (clamped); k = 15 at 2^112 (e = 239) sent, 2^111.x held",
        ),
        ("algorithm:3.3", "algorithm:3.4"),
    ),
    (
        StepCase(
            "smallest_normals_never_candidates",
            [F32_TINY, -F32_TINY, 2.0**-125, 2.0**-75, 2.0**-74],
            [0.0] * 5,
            why="r*r underflows to 0 below about 2^-75, so no candidate has e < 52",
        ),
        ("algorithm:3.2", "decision:6"),
    ),
]

NEW_VGC_CASES.append(
    (
        StepCase(
            "residual_feedback_not_interned",
            [1.3, -2.7, 0.01],
            [0.0] * 3,
            [0.0, 0.0, 1.0],
            [0.0] * 3,
            {"residual": "".join(["feed", "back"])},
            why="the residual mode compares by value: a 'feedback' built at run time is feedback",
        ),
        ("algorithm:3.5", "decision:7"),
    )
)

NEW_STROM_CASES = [
    (
        StepCase(
            "v_left_alone",
            [1.0, -3.0, 0.25, 0.0],
            [0.5, 0.0, 0.0, 0.0],
            [1.5, 0.0, 3e38, F32_SUB],
            params={"tau": 1.0},
            why="Strom never reads or writes v, which starts non-zero",
        ),
        ("algorithm:4",),
    ),
    (
        StepCase(
            "tau_rounds_down",
            [float(f32(TAU_DOWN)), 1.0, 0.75, -2.0, _near(TAU_DOWN, -1)],
            [0.0] * 5,
            params={"tau": TAU_DOWN},
            why="r - tau32 rounded in float32; tau32 = float32(0.7) < 0.7",
        ),
        ("algorithm:4", "decision:3", "decision:8"),
    ),
    (
        StepCase(
            "tau_rounds_up",
            [float(f32(TAU_UP)), 1.0, 0.75, -2.0, 16777216.0],
            [0.0] * 5,
            params={"tau": TAU_UP},
            why="tau32 = float32(0.1) > 0.1",
        ),
        ("algorithm:4", "decision:3", "decision:8"),
    ),
    (
        StepCase(
            "tau_huge",
            [F32_MAX, -F32_MAX, _near(F32_MAX, -1)],
            [0.0] * 3,
            params={"tau": F32_MAX},
            why="tau = float32 max",
        ),
        ("algorithm:4",),
    ),
    (
        StepCase(
            "subnormal_difference",
            [2.0**-126 + 2.0**-140, -(2.0**-125), 2.0**-126],
            [0.0] * 3,
            params={"tau": 2.0**-126},
            why="r - tau is subnormal: kept, not flushed",
        ),
        ("algorithm:4",),
    ),
]


def _segment_id_case(kind: str, segment_id: int) -> Case:
    c = StepCase(
        "segment_id", [1.0, -0.5, 0.0], [0.5, 0.0, 0.0], params={"tau": 0.5} if kind == "strom" else {}
    )
    return Case(
        f"{kind}.segment_id_{segment_id}",
        ("algorithm:3.4", "algorithm:4") if kind == "strom" else ("algorithm:3.4",),
        _step_run(kind, c, segment_id),
        "the packet carries any u32 segment id, 0 and 2^32 - 1 included",
    )


def _long_segment_case(kind: str) -> Case:
    """n = 300: more elements than any small-number shortcut covers."""
    rng = np.random.default_rng(300)
    r = (variance_cases.normal(rng, 300) * np.ldexp(1.0, rng.integers(-6, 6, 300))).astype(f32)
    g = variance_cases.normal(rng, 300).astype(f32)
    c = StepCase(
        "n_300", r.tolist(), g.tolist(), [1.0] * 300, [0.5] * 300, {"tau": 0.5} if kind == "strom" else {}
    )
    rules = ("algorithm:4",) if kind == "strom" else ("algorithm:3.1", "algorithm:3.4")
    return Case(f"{kind}.n_300", rules, _step_run(kind, c, 6), "a segment of 300 elements")


def _multi_step(name: str, kind: str, params_kw: dict, steps: int, seed: int):
    """Several steps from zero state with the same implementation state carried."""

    def run(impl):
        rng = np.random.default_rng(seed)
        n = 12
        got = ref.SegmentState.zeros(n, 5)
        want = ref.SegmentState.zeros(n, 5)
        params = ref.VGCParams(**params_kw) if kind == "vgc" else ref.StromParams(**params_kw)
        for t in range(steps):
            g = (variance_cases.normal(rng, n) * np.ldexp(1.0, rng.integers(-8, 8, n))).astype(f32)
            s = (g * g * f32(4)).astype(f32)
            if kind == "vgc":
                want_p, want_err = call(ref.vgc_step, want, g.copy(), s.copy(), params)
                got_p, got_err = call(impl.vgc_step, got, g.copy(), s.copy(), params)
            else:
                want_p, want_err = call(ref.strom_step, want, g.copy(), params)
                got_p, got_err = call(impl.strom_step, got, g.copy(), params)
            assert_same_outcome(f"step {t}", got_err, want_err)
            assert_packets_equal(f"step {t} packet", [got_p], [want_p])
            assert_bits_equal(f"step {t}: r", got.r, want.r)
            assert_bits_equal(f"step {t}: v", got.v, want.v)

    return Case(f"steps.{name}", ("algorithm:3.1", "algorithm:3.5"), run, "state carried across steps")


# --------------------------------------------------------------------------------------
# Invalid step inputs, alone and in pairs
# --------------------------------------------------------------------------------------


def _put(x, positions, value):
    x = x.copy()
    x[list(positions)] = value
    return x


#: name -> (kind or None for both, rules, function (r, v, g, s, positions) -> (r, v, g, s)).
#: In the reference's order of checks (docs/algorithm.md, decision 2).
INVALID_INPUTS: dict[str, tuple] = {
    "g_list": (None, ("error:1",), lambda r, v, g, s, p: (r, v, g.tolist(), s)),
    "g_float64": (None, ("error:1",), lambda r, v, g, s, p: (r, v, g.astype(np.float64), s)),
    "g_2d": (None, ("error:1",), lambda r, v, g, s, p: (r, v, g.reshape(1, -1), s)),
    "g_too_short": (None, ("error:1",), lambda r, v, g, s, p: (r, v, g[1:], s)),
    "g_int32": (None, ("error:1",), lambda r, v, g, s, p: (r, v, g.astype(np.int32), s)),
    "s_int32": ("vgc", ("error:1",), lambda r, v, g, s, p: (r, v, g, s.astype(np.int32))),
    "s_float16": ("vgc", ("error:1",), lambda r, v, g, s, p: (r, v, g, s.astype(np.float16))),
    "g_0d": (None, ("error:1",), lambda r, v, g, s, p: (r, v, np.ones((), np.float32), s)),
    "g_nan": (None, ("error:2",), lambda r, v, g, s, p: (r, v, _put(g, p, np.nan), s)),
    "g_inf": (None, ("error:2",), lambda r, v, g, s, p: (r, v, _put(g, p, np.inf), s)),
    "g_negative_inf": (None, ("error:2",), lambda r, v, g, s, p: (r, v, _put(g, p, -np.inf), s)),
    "s_list": ("vgc", ("error:1",), lambda r, v, g, s, p: (r, v, g, s.tolist())),
    "s_none": ("vgc", ("error:1",), lambda r, v, g, s, p: (r, v, g, None)),
    "s_float64": ("vgc", ("error:1",), lambda r, v, g, s, p: (r, v, g, s.astype(np.float64))),
    "s_too_long": ("vgc", ("error:1",), lambda r, v, g, s, p: (r, v, g, np.append(s, f32(0)))),
    "s_nan": ("vgc", ("error:2",), lambda r, v, g, s, p: (r, v, g, _put(s, p, np.nan))),
    "s_inf": ("vgc", ("error:2",), lambda r, v, g, s, p: (r, v, g, _put(s, p, np.inf))),
    "s_negative": ("vgc", ("error:3",), lambda r, v, g, s, p: (r, v, g, _put(s, p, -1e-30))),
    "s_negative_zero_ok": ("vgc", ("error:3",), lambda r, v, g, s, p: (r, v, g, _put(s, p, -0.0))),
    "r_plus_g_overflows": (
        None,
        ("error:4",),
        lambda r, v, g, s, p: (_put(r, p, 3e38), v, _put(g, p, 3e38), s),
    ),
    "r_plus_g_overflows_negative": (
        None,
        ("error:4",),
        lambda r, v, g, s, p: (_put(r, p, -3e38), v, _put(g, p, -3e38), s),
    ),
    "v_plus_s_overflows": (
        "vgc",
        ("error:4",),
        lambda r, v, g, s, p: (r, _put(v, p, 3e38), g, _put(s, p, 3e38)),
    ),
}
#: Element rules that can be broken together, in the reference's order of checks.
PAIR_RULES = [
    "g_float64",
    "g_nan",
    "s_float64",
    "s_nan",
    "s_negative",
    "r_plus_g_overflows",
    "v_plus_s_overflows",
]


def _base_inputs():
    r = np.array([0.5, -1.0, 2.0, 3e-3, 1e10, -0.0, 7.0], f32)
    v = np.array([1.0, 0.0, 2.0, 0.25, 1e10, 0.0, 3.0], f32)
    g = np.array([0.25, 1.0, -2.0, 1e-3, 1.0, 0.0, -7.0], f32)
    s = np.array([0.5, 0.0, 1.0, 0.0, 1e9, 2.0**-140, 0.0], f32)
    return r, v, g, s


def _invalid_run(kind, mutators, segment_id=9):
    def run(impl):
        r, v, g, s = _base_inputs()
        for fn, positions in mutators:
            r, v, g, s = fn(r, v, g, s, positions)
        params = ref.VGCParams() if kind == "vgc" else ref.StromParams(1.0)
        compare_step(impl, kind, r, v, g, s, params, segment_id)

    return run


def _one_element_2d(kind: str, name: str) -> Case:
    """n = 1 and g (or s) of shape (1, 1): its length matches n, only the rank is wrong."""

    def run(impl):
        r, v = np.array([0.5], f32), np.array([1.0], f32)
        g, s = np.array([0.25], f32), np.array([0.5], f32)
        if name == "g":
            g = g.reshape(1, 1)
        else:
            s = s.reshape(1, 1)
        params = ref.VGCParams() if kind == "vgc" else ref.StromParams(1.0)
        compare_step(impl, kind, r, v, g, s, params, 4)

    return Case(f"invalid.{kind}-{name}_2d_n1", ("error:1", "algorithm:3.0"), run)


def _invalid_cases() -> list[Case]:
    cases = [_one_element_2d("vgc", "g"), _one_element_2d("strom", "g"), _one_element_2d("vgc", "s")]
    for name, (only, rules, fn) in INVALID_INPUTS.items():
        for kind in ("vgc", "strom"):
            if only in (None, kind):
                cases.append(
                    Case(
                        f"invalid.{kind}-{name}",
                        (*rules, "algorithm:3.0", "decision:2"),
                        _invalid_run(kind, [(fn, (2, 5))]),
                    )
                )
    # Two rules broken at once, the later rule at the lower index: the earlier rule is reported.
    for a, b in itertools.permutations(PAIR_RULES, 2):
        for kind in ("vgc", "strom"):
            if any(INVALID_INPUTS[x][0] not in (None, kind) for x in (a, b)):
                continue
            mutators = [(INVALID_INPUTS[b][2], (1,)), (INVALID_INPUTS[a][2], (4,))]
            cases.append(
                Case(
                    f"pair.{kind}-{a}+{b}",
                    ("algorithm:3.0", "decision:2", "error:pair"),
                    _invalid_run(kind, mutators),
                    why=f"{a} at index 4 and {b} at index 1",
                )
            )
    return cases


# --------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------


def _decode_run(data: bytes, name: str, must_reject: bool):
    def run(impl):
        buffer = bytearray(data)
        want, want_err = call(ref.decode_message, bytes(data))
        got, got_err = call(impl.decode_message, buffer)
        assert_same_outcome(f"decode_message({name})", got_err, want_err)
        assert bytes(buffer) == data, f"decode_message({name}): the message buffer was modified"
        assert (want_err is not None) == must_reject, f"the reference's verdict on {name} changed"
        if want_err is None:
            assert_packets_equal(f"decode_message({name})", got, want)

    return run


def _decode_accumulate_run(data: bytes, name: str):
    def run(impl):
        good = valid_message()
        messages = [good, good, data]
        sentinel = [np.full(n, f32(-7.5)) for n in VALID_SIZES]
        out = [a.copy() for a in sentinel]
        _, want_err = call(ref.decode_accumulate, messages, VALID_SIZES, [a.copy() for a in sentinel])
        _, got_err = call(impl.decode_accumulate, messages, VALID_SIZES, out)
        assert_same_outcome(f"decode_accumulate(..., {name})", got_err, want_err)
        for j, (a, b) in enumerate(zip(out, sentinel)):
            assert a.tobytes() == b.tobytes(), f"out[{j}] was written although a message was rejected"

    return run


#: The check of docs/format.md "What a decoder rejects" each malformed message of cases.py breaks.
MALFORMED_RULES = {
    "empty_input": 1,
    "shorter_than_header": 1,
    "wrong_magic": 2,
    "wrong_version": 3,
    "header_reserved_nonzero": 4,
    "truncated_words": 6,
    "truncated_segment_header": 5,
    "trailing_bytes": 7,
    "crc_mismatch": 8,
    "crc_missing": 6,
    "segment_count_too_large": 5,
    "segment_count_too_small": 7,
    "word_count_too_large": 6,
    "word_count_too_small": 7,
    "unknown_codec": 10,
    "segment_reserved_nonzero": 11,
    "n_above_2_27": 9,
    "duplicate_segment_id": 12,
    "vgc_index_equals_n": 15,
    "vgc_index_above_n": 15,
    "vgc_indices_decreasing": 16,
    "vgc_duplicate_index": 16,
    "vgc_k_too_large": 17,
    "vgc_E_255": 13,
    "vgc_E_zero_with_words": 13,
    "vgc_E_nonzero_empty": 13,
    "vgc_param_reserved_bits": 13,
    "strom_index_equals_n": 15,
    "strom_indices_decreasing": 16,
    "strom_tau_zero": 13,
    "strom_tau_negative": 13,
    "strom_tau_nan": 13,
    "strom_tau_inf": 13,
    "dense_count_differs_from_n": 14,
    "dense_param_nonzero": 13,
    "dense_nan": 19,
    "dense_inf": 19,
}

_W = VGC_SEG[4]


def _segments(*specs) -> list[bytes]:
    return [seg(s) if isinstance(s, tuple) else s for s in specs]


def _more_malformed() -> dict[str, tuple[bytes, tuple[str, ...]]]:
    """name -> (message, rules): what cases.py lacks."""
    out: dict[str, tuple[bytes, tuple[str, ...]]] = {}
    base = [seg(VGC_SEG), seg(STROM_SEG), seg(DENSE_SEG)]
    # A STROM index with high bits set (the 31-bit field read whole, not masked to 27 bits):
    # 0x40000001 >= n, where 27 bits would read 1 < n.
    for bit in (27, 30):
        word = strom_word((1 << bit) + 1, 0)
        out[f"strom_index_bit_{bit}"] = (
            raw_message([seg(VGC_SEG), seg(STROM_SEG, words=[word]), seg(DENSE_SEG)]),
            ("format:15",),
        )
    # Every reserved bit on its own.
    for bit in range(16):
        out[f"header_reserved_bit_{bit}"] = (raw_message(base, reserved=1 << bit), ("format:4",))
    for bit in range(24):
        reserved = (1 << bit).to_bytes(3, "little")
        out[f"segment_reserved_bit_{bit}"] = (
            raw_message([seg(VGC_SEG, reserved=reserved), *base[1:]]),
            ("format:11",),
        )
    for bit in range(8, 32):
        out[f"vgc_param_reserved_bit_{bit}"] = (
            raw_message([seg(VGC_SEG, param=130 | 1 << bit), *base[1:]]),
            ("format:13",),
        )
    for bit in range(32):
        out[f"dense_param_bit_{bit}"] = (
            raw_message([*base[:2], seg(DENSE_SEG, param=1 << bit)]),
            ("format:13",),
        )
    for bit in range(1, 8):
        out[f"version_bit_{bit}"] = (raw_message(base, version=1 | 1 << bit), ("format:3",))
    # Rules alone that cases.py does not isolate.
    extra = (5, 100, 1, 130, [vgc_word(1, 0, 0)])
    out["duplicate_id_distance_2"] = (raw_message([*base, seg(extra, segment_id=0)]), ("format:12",))
    out["duplicate_id_distance_3"] = (
        raw_message([*base, seg(extra, segment_id=7), seg(extra, segment_id=0)]),
        ("format:12",),
    )
    out["duplicate_id_adjacent_last"] = (
        raw_message([*base, seg(extra, segment_id=2)]),
        ("format:12",),
    )
    for k in (1, 2, 3, 4, 8):
        out[f"bytes_after_crc_{k}"] = (valid_message() + bytes(k), ("format:7",))
    out["bytes_after_crc_nonzero"] = (valid_message() + b"\x01", ("format:7",))
    out["vgc_E_254_k_0_missing"] = (
        raw_message([seg(VGC_SEG, param=254, words=[vgc_word(0, 0, 1), vgc_word(3, 0, 2)])]),
        ("format:18", "decision:12"),
    )
    out["vgc_no_k_zero"] = (
        raw_message([seg(VGC_SEG, words=[vgc_word(0, 0, 1), vgc_word(7, 1, 15), vgc_word(99, 0, 3)])]),
        ("format:18", "decision:12"),
    )
    out["vgc_k_equals_E"] = (
        raw_message([seg(VGC_SEG, param=3, words=[vgc_word(0, 0, 0), vgc_word(5, 0, 3)])]),
        ("format:17",),
    )
    out["vgc_count_above_n"] = (
        raw_message([seg((0, 2, 1, 130, [vgc_word(0, 0, 0), vgc_word(1, 0, 0), vgc_word(1, 0, 1)]))]),
        ("format:14",),
    )
    out["strom_count_above_n"] = (
        raw_message([seg((1, 1, 2, f32_bits(0.5), [strom_word(0, 0), strom_word(0, 1)]))]),
        ("format:14",),
    )
    out["strom_word_high_bits"] = (
        raw_message([seg((1, 50, 2, f32_bits(0.5), [strom_word(2, 1), 1 << 31]))]),
        ("format:15",),
    )
    out["strom_tau_negative_zero"] = (raw_message([seg(STROM_SEG, param=0x80000000)]), ("format:13",))
    out["strom_duplicate_index"] = (
        raw_message([seg(STROM_SEG, words=[strom_word(2, 0), strom_word(2, 1)])]),
        ("format:16",),
    )
    out["dense_negative_nan"] = (
        raw_message([seg(DENSE_SEG, words=[f32_bits(1.5), 0, 0xFFC00001])]),
        ("format:19",),
    )
    out["dense_count_zero_n_positive"] = (raw_message([seg((2, 3, 0, 0, []))]), ("format:14",))
    out["n_2_27_plus_1_empty"] = (raw_message([seg((0, (1 << 27) + 1, 1, 0, []))]), ("format:9",))
    out["n_u32_max"] = (raw_message([seg((0, 0xFFFFFFFF, 2, f32_bits(1.0), []))]), ("format:9",))
    out["codec_255"] = (raw_message([seg(STROM_SEG, codec=255)]), ("format:10",))
    out["codec_3_empty"] = (raw_message([seg((0, 0, 3, 0, []))]), ("format:10",))
    out["segment_count_huge"] = (raw_message(base, segment_count=0xFFFFFFFF), ("format:5",))
    out["word_count_huge"] = (raw_message([seg(VGC_SEG, count=0xFFFFFFFF)]), ("format:6",))
    out["cut_before_crc_no_words"] = (
        raw_message([seg((0, 0, 1, 0, []))], cut=4),
        ("format:5",),
    )
    out["cut_before_crc_no_segments"] = (raw_message([], cut=4), ("format:1",))
    out["three_bytes"] = (b"VGC", ("format:1",))
    out["vgc_E_1_empty"] = (raw_message([seg(VGC_SEG, param=1, words=[])]), ("format:13",))
    out["dense_count_above_n"] = (raw_message([seg((2, 2, 0, 0, [0, 0, 0]))]), ("format:14",))
    out["vgc_E_255_empty"] = (raw_message([seg(VGC_SEG, param=255, words=[])]), ("format:13",))
    # A valid message cut at every length: the field reported is the first one that does not
    # fit before the (apparent) last 4 bytes; with the CRC recomputed over the cut body, too.
    whole = valid_message()
    for length in range(len(whole)):
        out[f"cut_to_{length}"] = (whole[:length], ("format:1", "format:5", "format:6"))
    body = len(whole) - 4
    for k in range(1, body + 1):
        out[f"cut_body_by_{k}_crc_fixed"] = (raw_message(base, cut=k), ("format:1", "format:5", "format:6"))
    # Two rules at once: the earlier check is reported (the order is part of the contract).
    bad_index = seg(VGC_SEG, words=[_W[0], _W[1], vgc_word(100, 0, 3)])
    out["content_error_and_bad_crc"] = (
        raw_message([bad_index, *base[1:]], crc_xor=1),
        ("format:8", "format:15", "format:order"),
    )
    out["trailing_bytes_and_bad_crc"] = (
        raw_message(base, trailing=b"\0\0\0\0", crc_xor=1),
        ("format:7", "format:8", "format:order"),
    )
    out["magic_and_version"] = (
        raw_message(base, magic=b"XGCM", version=9),
        ("format:2", "format:3", "format:order"),
    )
    out["version_and_reserved"] = (
        raw_message(base, version=0, reserved=1),
        ("format:3", "format:4", "format:order"),
    )
    out["n_and_codec"] = (
        raw_message([seg(VGC_SEG, n=(1 << 27) + 1, codec=7), *base[1:]]),
        ("format:9", "format:10", "format:order"),
    )
    out["codec_and_reserved"] = (
        raw_message([seg(VGC_SEG, codec=7, reserved=b"\0\0\1"), *base[1:]]),
        ("format:10", "format:11", "format:order"),
    )
    out["reserved_and_duplicate"] = (
        raw_message([*base, seg(extra, segment_id=1, reserved=b"\1\0\0")]),
        ("format:11", "format:12", "format:order"),
    )
    out["duplicate_and_param"] = (
        raw_message([*base, seg(extra, segment_id=1, param=255)]),
        ("format:12", "format:13", "format:order"),
    )
    out["param_and_count"] = (
        raw_message([seg((0, 2, 1, 255, [vgc_word(0, 0, 0), vgc_word(1, 0, 0), vgc_word(1, 0, 0)]))]),
        ("format:13", "format:14", "format:order"),
    )
    out["count_and_index"] = (
        raw_message([seg((0, 2, 1, 130, [vgc_word(0, 0, 0), vgc_word(1, 0, 0), vgc_word(9, 0, 0)]))]),
        ("format:14", "format:15", "format:order"),
    )
    out["index_above_n_after_decreasing"] = (
        raw_message([seg(VGC_SEG, words=[_W[2], _W[1], vgc_word(100, 0, 3)])]),
        ("format:15", "format:16", "format:order"),
    )
    out["decreasing_after_k_too_large"] = (
        raw_message(
            [seg(VGC_SEG, param=10, words=[vgc_word(5, 0, 11), vgc_word(9, 0, 0), vgc_word(3, 0, 0)])]
        ),
        ("format:16", "format:17", "format:order"),
    )
    out["k_too_large_and_no_k_zero"] = (
        raw_message([seg(VGC_SEG, param=10, words=[vgc_word(5, 0, 3), vgc_word(9, 0, 12)])]),
        ("format:17", "format:18", "format:order"),
    )
    out["dense_param_and_count"] = (
        raw_message([seg(DENSE_SEG, param=1, n=5)]),
        ("format:13", "format:14", "format:order"),
    )
    out["dense_count_and_nan"] = (
        raw_message([seg((2, 4, 0, 0, [0x7FC00000, 0, 0]))]),
        ("format:14", "format:19", "format:order"),
    )
    out["later_segment_earlier_rule"] = (
        raw_message([bad_index, seg(STROM_SEG, n=(1 << 27) + 1)]),
        ("format:9", "format:15", "format:order"),
    )
    out["truncated_and_bad_magic"] = (b"XGCM\x01\x00\x00", ("format:1", "format:2", "format:order"))
    return out


VALID_MESSAGES: dict[str, list] = {
    "empty": [],
    "three_codecs": ref.decode_message(valid_message()),
    "max_index_E_254": [ref.Packet(0, 1 << 27, ref.Codec.VGC_Q4, 254, [((1 << 27) - 1) << 5 | 16])],
    # Indices 5 and 2^26 + 5 of a 2^27-element segment: a codec with a 26-bit index field
    # reads them as equal (not increasing); the fast twin of the slow 2^27 step.
    "index_bit_26_kept": [
        ref.Packet(0, 1 << 27, ref.Codec.VGC_Q4, 130, [vgc_word(5, 0, 0), vgc_word((1 << 26) + 5, 1, 3)]),
        ref.Packet(
            1, 1 << 27, ref.Codec.STROM, f32_bits(0.5), [strom_word(5, 0), strom_word((1 << 26) + 5, 1)]
        ),
    ],
    "E_1_and_k_15": [
        ref.Packet(1, 40, ref.Codec.VGC_Q4, 1, [vgc_word(0, 0, 0), vgc_word(39, 1, 0)]),
        ref.Packet(2, 40, ref.Codec.VGC_Q4, 16, [vgc_word(3, 0, 15), vgc_word(4, 1, 0)]),
    ],
    "zero_lengths": [
        ref.Packet(0, 0, ref.Codec.VGC_Q4, 0, []),
        ref.Packet(0xFFFFFFFF, 0, ref.Codec.STROM, f32_bits(F32_SUB), []),
        ref.Packet(7, 0, ref.Codec.DENSE, 0, []),
    ],
    "strom_extremes": [
        ref.Packet(3, 1 << 27, ref.Codec.STROM, f32_bits(F32_MAX), [0, ((1 << 27) - 1) << 1 | 1]),
        ref.Packet(4, 5, ref.Codec.STROM, f32_bits(F32_SUB), [strom_word(4, 1)]),
    ],
    "dense_bits": [
        ref.Packet(
            9,
            5,
            ref.Codec.DENSE,
            0,
            [0x80000000, 0, 1, f32_bits(F32_MAX), f32_bits(-F32_MAX)],
        )
    ],
    "n_2_27_empty": [ref.Packet(1, 1 << 27, ref.Codec.VGC_Q4, 0, [])],
    "dense_300": [ref.Packet(1, 300, ref.Codec.DENSE, 0, np.arange(300, dtype=np.uint32) << np.uint32(20))],
    "three_hundred_segments": [ref.Packet(j, 0, ref.Codec.VGC_Q4, 0, []) for j in range(300)],
}


NOT_BYTES = {"int": 12345, "str": "VGCM", "none": None, "list_of_ints": [86, 71, 67, 77]}


def _decode_not_bytes_run(name: str):
    def run(impl):
        data = NOT_BYTES[name]
        _, want_err = call(ref.decode_message, data)
        _, got_err = call(impl.decode_message, data)
        assert want_err is not None, f"the reference accepts {name}"
        assert_same_outcome(f"decode_message({name})", got_err, want_err)
        good = valid_message()
        _, want_err = call(ref.decode_accumulate, [good, data], VALID_SIZES)
        _, got_err = call(impl.decode_accumulate, [good, data], VALID_SIZES)
        assert_same_outcome(f"decode_accumulate([message, {name}])", got_err, want_err)

    return run


def _encode_run(name, packets):
    def run(impl):
        want = ref.encode_message(packets)
        got, err = call(impl.encode_message, list(packets))
        assert_same_outcome(f"encode_message({name})", err, None)
        assert_bytes_equal(f"encode_message({name})", got, want)
        decoded, err = call(impl.decode_message, want)
        assert_same_outcome(f"decode_message(encode_message({name}))", err, None)
        assert_packets_equal(f"decode_message({name})", decoded, packets)

    return run


_WORD0 = vgc_word(0, 0, 0)


def _packet(segment_id=0, n=100, codec=ref.Codec.VGC_Q4, param=130, words=(_WORD0,)):
    p = ref.Packet(0, 0, ref.Codec.DENSE, 0, [])
    object.__setattr__(p, "segment_id", segment_id)  # a Packet does not validate: the encoder must
    object.__setattr__(p, "n", n)
    object.__setattr__(p, "codec", codec)
    object.__setattr__(p, "param", param)
    object.__setattr__(p, "words", np.asarray(words, np.uint32))
    return p


_GOOD = _packet()
INVALID_PACKETS: dict[str, list] = {
    "not_a_packet": [_GOOD, "packet"],
    "segment_id_too_large": [_packet(segment_id=1 << 32)],
    "segment_id_negative": [_packet(segment_id=-1)],
    "segment_id_float": [_packet(segment_id=1.0)],
    "segment_id_bool": [_packet(segment_id=True)],
    "n_above_2_27": [_packet(n=(1 << 27) + 1)],
    "n_negative": [_packet(n=-1)],
    "param_too_large": [_packet(param=1 << 32)],
    "words_2d": [_packet(words=[[vgc_word(0, 0, 0)]])],
    "duplicate_segment_id": [_GOOD, _packet(n=5, codec=ref.Codec.DENSE, param=0, words=[0] * 5)],
    "duplicate_segment_id_distance_2": [
        _GOOD,
        _packet(segment_id=1),
        _packet(segment_id=0, codec=ref.Codec.DENSE, n=0, param=0, words=[]),
    ],
    "vgc_param_reserved": [_packet(param=130 | 1 << 8)],
    "vgc_E_255": [_packet(param=255)],
    "vgc_E_255_empty": [_packet(param=255, words=[])],
    "vgc_E_0_with_words": [_packet(param=0)],
    "vgc_E_nonzero_empty": [_packet(words=[])],
    "vgc_count_above_n": [_packet(n=1, words=[vgc_word(0, 0, 0), vgc_word(0, 0, 1)])],
    "vgc_index_equals_n": [_packet(words=[vgc_word(0, 0, 0), vgc_word(100, 0, 0)])],
    "vgc_indices_decreasing": [_packet(words=[vgc_word(5, 0, 0), vgc_word(4, 0, 0)])],
    "vgc_k_equals_E": [_packet(param=3, words=[vgc_word(0, 0, 0), vgc_word(4, 0, 3)])],
    "vgc_no_k_zero": [_packet(words=[vgc_word(0, 0, 1)])],
    "strom_tau_zero": [_packet(codec=ref.Codec.STROM, param=0, words=[])],
    "strom_tau_negative": [_packet(codec=ref.Codec.STROM, param=f32_bits(-1.0), words=[])],
    "strom_tau_inf": [_packet(codec=ref.Codec.STROM, param=0x7F800000, words=[])],
    "strom_count_above_n": [_packet(codec=ref.Codec.STROM, param=f32_bits(1.0), n=1, words=[0, 2])],
    "strom_index_equals_n": [_packet(codec=ref.Codec.STROM, param=f32_bits(1.0), n=3, words=[6])],
    "dense_param": [_packet(codec=ref.Codec.DENSE, param=1, n=1, words=[0])],
    "dense_count": [_packet(codec=ref.Codec.DENSE, param=0, n=2, words=[0])],
    "dense_count_above_n": [_packet(codec=ref.Codec.DENSE, param=0, n=1, words=[0, 0])],
    "dense_nan": [_packet(codec=ref.Codec.DENSE, param=0, n=1, words=[0x7FC00000])],
    "later_packet_invalid": [_GOOD, _packet(segment_id=1, param=0)],
    # Which error wins (docs/conformance.md): each packet completely, in list order; its
    # repeated segment id last.
    "content_error_before_a_later_bad_field": [_packet(param=0), _packet(segment_id=1 << 32)],
    "own_content_before_repeated_id": [_GOOD, _packet(param=0)],
}


def _encode_invalid_run(name, packets):
    def run(impl):
        _, want_err = call(ref.encode_message, packets)
        _, got_err = call(impl.encode_message, packets)
        assert want_err is not None, f"the reference accepts {name}"
        assert_same_outcome(f"encode_message({name})", got_err, want_err)

    return run


# --------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------


def _aggregate_run(case: AggregateCase, use_out: bool):
    def run(impl):
        messages, sizes = case.messages(), case.sizes
        want = ref.decode_accumulate(messages, sizes)
        try:
            if use_out:
                out = [np.full(n, f32(np.nan)) for n in sizes]
                arrays = list(out)  # the caller's own arrays: read back through these
                got, err = call(impl.decode_accumulate, messages, sizes, out)
                assert_same_outcome("decode_accumulate(..., out)", err, None)
                for j, (o, w) in enumerate(zip(arrays, want)):
                    assert_bits_equal(
                        f"out[{j}] (the caller's array) after decode_accumulate(..., out)", o, w
                    )
                assert isinstance(got, (list, tuple)) and all(a is b for a, b in zip(got, arrays)), (
                    "decode_accumulate(..., out) must return out's own arrays (docs/conformance.md)"
                )
            else:
                got, err = call(impl.decode_accumulate, messages, sizes)
                assert_same_outcome("decode_accumulate", err, None)
            assert isinstance(got, (list, tuple)) and len(got) == len(sizes), (
                f"decode_accumulate must return one array per segment ({len(sizes)})"
            )
            for j, (g, w) in enumerate(zip(got, want)):
                assert_bits_equal(f"g_hat of segment {j}", g, w)
        except AssertionError as err:
            raise AssertionError(f"{err}\n  case {case.name}: {case.why}; ranks={case.ranks}") from None

    return run


def _dense(segment_id, values):
    return (segment_id, len(values), 0, 0, [f32_bits(x) for x in values])


NEW_AGGREGATE_CASES = [
    AggregateCase(
        "long_segments",
        [
            [_dense(0, [float(i) for i in range(300)]), (1, 300, 1, 130, [vgc_word(299, 1, 0)])],
            [(1, 300, 2, f32_bits(0.5), [strom_word(0, 0), strom_word(299, 1)]), _dense(0, [0.5] * 300)],
        ],
        [300, 300],
        why="segments of 300 elements",
    ),
    AggregateCase(
        "three_hundred_segments",
        [[_dense(j, [float(j)]) for j in range(300)], [(j, 1, 1, 0, []) for j in range(300)]],
        [1] * 300,
        why="300 segments (more than any small-number shortcut), one element each",
    ),
    AggregateCase(
        "float64_accumulator_shows",
        [
            [_dense(0, [1.0, 3.0, 1e-8])],
            [_dense(0, [2.0**-24, 2.0**-23, 1.0])],
            [_dense(0, [2.0**-24, 2.0**-23, -1.0])],
        ],
        [3],
        why="each rank's add rounds to float32; a float64 accumulator rounds once at the end",
    ),
    AggregateCase(
        "subnormal_sums",
        [[_dense(0, [F32_SUB, 2.0**-127, -(2.0**-140)])], [_dense(0, [F32_SUB, 2.0**-127, 2.0**-141])]],
        [3],
        why="subnormal sums and the division by P keep subnormals (no flush to zero)",
    ),
    AggregateCase(
        "overflow_to_inf",
        [[_dense(0, [3e38, -3e38])], [_dense(0, [3e38, -3e38])], [_dense(0, [-3e38, 3e38])]],
        [2],
        why="3e38 + 3e38 = inf in float32, and stays inf: rank order decides",
    ),
    AggregateCase(
        "vgc_extreme_exponents",
        [
            [(0, 3, 1, 254, [vgc_word(0, 0, 0), vgc_word(2, 1, 0)])],
            [(0, 3, 1, 16, [vgc_word(1, 0, 15), vgc_word(2, 0, 0)])],
            [(0, 3, 1, 1, [vgc_word(0, 1, 0), vgc_word(1, 0, 0)])],
        ],
        [3],
        why="E = 254 (2^127), E - k = 1 (2^-126), E = 1",
    ),
    AggregateCase(
        "seven_ranks",
        [[_dense(0, [1.0, 0.1])] for _ in range(7)],
        [2],
        why="divide by float32(7), which is not a power of two",
    ),
]


def _clone(a):
    """A copy of an ``out`` entry, read-only when the original is."""
    if not isinstance(a, np.ndarray):
        return list(a)
    b = a.copy()
    b.setflags(write=a.flags.writeable)
    return b


def _bad_aggregation_run(name, messages, sizes, out_factory):
    def run(impl):
        sentinel = out_factory()
        out_got = None if sentinel is None else [_clone(a) for a in sentinel]
        out_want = None if sentinel is None else [_clone(a) for a in sentinel]
        _, want_err = call(ref.decode_accumulate, messages, sizes, out_want)
        _, got_err = call(impl.decode_accumulate, messages, sizes, out_got)
        assert want_err is not None, f"the reference accepts {name}"
        assert_same_outcome(f"decode_accumulate({name})", got_err, want_err)
        for j, (a, b) in enumerate(zip(out_got or [], sentinel or [])):
            if isinstance(a, np.ndarray):
                assert a.tobytes() == b.tobytes(), f"out[{j}] was written although the call was rejected"

    return run


def _read_only(n):
    a = np.full(n, f32(-7.5))
    a.setflags(write=False)
    return a


def _precedence_aggregations():
    """Two faults in one call of decode_accumulate: the one docs/conformance.md ("Which
    error wins") says is reported. Every message is decoded, in rank order, before sizes
    and the layout are checked."""
    wrong_n = raw_message([seg(VGC_SEG, n=99, words=[_W[0]]), *_segments(STROM_SEG, DENSE_SEG)])
    crc = MALFORMED_MESSAGES["crc_mismatch"]
    return {
        "format_of_rank_1_before_layout_of_rank_0": ([wrong_n, crc], VALID_SIZES),
        "not_bytes_of_rank_1_before_layout_of_rank_0": ([wrong_n, bytes(crc).decode("latin-1")], VALID_SIZES),
        "format_of_rank_0_before_format_of_rank_1": (
            [MALFORMED_MESSAGES["vgc_indices_decreasing"], crc],
            VALID_SIZES,
        ),
        "format_before_bad_sizes": ([valid_message(), crc], [100, "50", 3]),
        "bad_sizes_before_layout": ([wrong_n], [100, 50.0, 3]),
        # the same faults as values alone (a port in another language sees these)
        "negative_size_before_layout": ([wrong_n], [100, -50, 3]),
        "size_above_2_27_before_layout": ([wrong_n], [100, 50, (1 << 27) + 1]),
        "empty_messages_before_bad_sizes": ([], "sizes"),
    }


def _bad_outs():
    def outs(*arrays):
        return lambda: list(arrays)

    v = [np.full(n, f32(-7.5)) for n in VALID_SIZES]
    return {
        "out_too_few_arrays": outs(v[0], v[1]),
        "out_too_many_arrays": outs(*v, np.zeros(1, f32)),
        "out_wrong_length": outs(v[0], np.zeros(49, f32), v[2]),
        "out_float64": outs(v[0], v[1], np.zeros(3, np.float64)),
        "out_2d": outs(v[0], np.zeros((1, 50), f32), v[2]),
        "out_list": outs(v[0], v[1], [0.0, 0.0, 0.0]),
        "out_read_only": outs(v[0], v[1], _read_only(3)),
        "n_larger_than_size": (lambda: None, [valid_message(), valid_message()], [100, 49, 3]),
        "n_larger_than_size_first_rank_ok": (
            lambda: None,
            [
                raw_message([seg(VGC_SEG, n=99, words=[_W[0]]), *_segments(STROM_SEG, DENSE_SEG)]),
                valid_message(),
            ],
            [99, 50, 3],
        ),
        "out_read_only_first": outs(_read_only(100), v[1], v[2]),
        "layout_error_before_bad_out": (
            lambda: [v[0]],
            [valid_message(), raw_message([seg(VGC_SEG)])],
            VALID_SIZES,
        ),
        "format_error_before_bad_out": (
            lambda: [v[0]],
            [valid_message(), MALFORMED_MESSAGES["crc_mismatch"]],
            VALID_SIZES,
        ),
    }


# --------------------------------------------------------------------------------------
# Input kinds the docs accept, and results read the way a caller reads them
# (docs/conformance.md, "Types exchanged")
# --------------------------------------------------------------------------------------


def _strided(a: np.ndarray) -> np.ndarray:
    view = np.zeros(2 * len(a), a.dtype)[::2]
    view[...] = a
    return view


def _frozen(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.setflags(write=False)
    return a


def _input_kind_run(kind: str, make):
    """One step on g (and s) of another accepted kind: the reference's packet and state."""

    def run(impl):
        rng = np.random.default_rng(31)
        n = 40
        g = (variance_cases.normal(rng, n) * 2.0).astype(f32)
        s = np.abs(variance_cases.normal(rng, n)).astype(f32)
        r = variance_cases.normal(rng, n).astype(f32)
        v = np.abs(variance_cases.normal(rng, n)).astype(f32)
        params = ref.VGCParams(alpha=1.5, zeta=0.9) if kind == "vgc" else ref.StromParams(tau=1.0)
        compare_step(impl, kind, r, v, make(g), make(s), params, 4)

    return run


def _out_tuple_of_strided_views(impl):
    """decode_accumulate into a tuple of strided views: written in place, returned as given."""
    messages = [valid_message(), valid_message()]
    want = ref.decode_accumulate(messages, VALID_SIZES)
    arrays = tuple(_strided(np.full(n, f32(np.nan))) for n in VALID_SIZES)
    got, err = call(impl.decode_accumulate, messages, VALID_SIZES, arrays)
    assert_same_outcome("decode_accumulate(..., out=tuple of strided views)", err, None)
    for j, (o, w) in enumerate(zip(arrays, want)):
        assert_bits_equal(f"out[{j}] (a strided view) after decode_accumulate", o, w)
    assert isinstance(got, (list, tuple)) and all(a is b for a, b in zip(got, arrays)), (
        "decode_accumulate(..., out) must return out's own arrays"
    )


def _packets_outlive_the_buffer(impl):
    """decode_message from a bytearray, which the caller then reuses: the packets keep their
    words (they share no memory with data)."""
    data = bytearray(valid_message())
    want = ref.decode_message(bytes(data))
    got, err = call(impl.decode_message, data)
    assert_same_outcome("decode_message(bytearray)", err, None)
    data[:] = bytes(len(data))  # the caller's buffer, overwritten after the call
    assert_packets_equal("packets after the caller overwrote its buffer", got, want)


def _read_only_memoryview(impl):
    data = memoryview(valid_message())
    want = ref.decode_message(valid_message())
    got, err = call(impl.decode_message, data)
    assert_same_outcome("decode_message(memoryview)", err, None)
    assert_packets_equal("decode_message(memoryview)", got, want)


def _conv_run(patches, delta, *form, nan_equal=False):
    """conv_grad_var(patches, delta[, form]) against the reference: bits (NaN as NaN: its
    sign and payload are the machine's, docs/algorithm.md 2.1)."""

    def run(impl):
        with np.errstate(all="ignore"):
            want = ref.conv_grad_var(patches, delta, *form)
            got, err = call(impl.conv_grad_var, patches.copy(), delta.copy(), *form)
        assert_same_outcome(f"conv_grad_var{form or ''}", err, None)
        assert isinstance(got, (tuple, list)) and len(got) == 4, "must return (g_W, s_W, g_b, s_b)"
        for name, g, w in zip(("g_W", "s_W", "g_b", "s_b"), got, want):
            if nan_equal:
                g, w = np.asarray(g), np.asarray(w)
                assert g.shape == w.shape and np.array_equal(np.isnan(g), np.isnan(w)), (
                    f"conv_grad_var {name}: NaN where the reference has {array_text(np.ravel(w))}, "
                    f"got {array_text(np.ravel(g))}"
                )
                g, w = np.where(np.isnan(g), 0, g).astype(f32), np.where(np.isnan(w), 0, w).astype(f32)
            assert_bits_equal(f"conv_grad_var{form} {name}", g, w)

    return run


def _dense_shape_run(n_in, n_out):
    def run(impl):
        x, delta = np.ones((3, n_in), f32), np.ones((3, n_out), f32)
        want = ref.dense_grad_var(x, delta)
        got, err = call(impl.dense_grad_var, x, delta)
        assert_same_outcome(f"dense_grad_var(in={n_in}, out={n_out})", err, None)
        for name, g, w in zip(("g_W", "s_W", "g_b", "s_b"), got, want):
            assert_bits_equal(f"dense_grad_var {name}", g, w)

    return run


def _kind_cases() -> list[Case]:
    kinds = {"strided": _strided, "read_only": _frozen}
    cases = [
        Case(f"{kind}.{name}_g_and_s", ("algorithm:3.1", "error:1"), _input_kind_run(kind, make))
        for kind in ("vgc", "strom")
        for name, make in kinds.items()
    ]
    cases += [
        Case("aggregate_out.tuple_of_strided_views", ("algorithm:7",), _out_tuple_of_strided_views),
        Case("decode.packets_outlive_the_buffer", ("format:canonical",), _packets_outlive_the_buffer),
        Case("decode.memoryview", ("error:10",), _read_only_memoryview),
        Case("variance.empty_inputs", ("algorithm:2",), _dense_shape_run(0, 3)),
        Case("variance.empty_outputs", ("algorithm:2",), _dense_shape_run(2, 0)),
        Case(
            "conv.default_form_is_exact",
            ("algorithm:2.1", "decision:11"),
            _conv_run(*variance_cases.CONV_EDGE_LAYERS["rows_b_major"]()),  # exact != approx here
        ),
        Case(
            "conv.empty_taps",
            ("algorithm:2.1",),
            _conv_run(np.ones((2, 3, 0), f32), np.ones((2, 3, 2), f32), "approx"),
        ),
    ]
    edges = {
        "x_squared_underflows": (1e-25, 1e5),
        "x_squared_overflows": (1e20, 1e-20),
        "inf_times_zero": (1e20, 1e-25),
    }
    for name, (x, d) in edges.items():
        for form in ("exact", "approx"):
            cases.append(
                Case(
                    f"conv.range_{name}.{form}",
                    ("algorithm:2.1", "decision:11"),
                    _conv_run(np.full((1, 1, 1), x, f32), np.full((1, 1, 1), d, f32), form, nan_equal=True),
                    "outside the normal range the approximation is the IEEE result, not refused",
                )
            )
    return cases


# --------------------------------------------------------------------------------------
# The dense layer
# --------------------------------------------------------------------------------------


def _variance_unmodified(impl):
    rng = np.random.default_rng(7)
    x = variance_cases.normal(rng, (5, 3)).astype(f32)
    delta = variance_cases.normal(rng, (5, 4)).astype(f32)
    x_in, d_in = x.copy(), delta.copy()
    got, err = call(impl.dense_grad_var, x_in, d_in)
    assert_same_outcome("dense_grad_var", err, None)
    assert_bits_equal("input x (must not be modified)", x_in, x)
    assert_bits_equal("input delta (must not be modified)", d_in, delta)
    want = ref.dense_grad_var(x, delta)
    assert isinstance(got, (tuple, list)) and len(got) == 4, "dense_grad_var must return (g_W, s_W, g_b, s_b)"
    for name, g, w in zip(("g_W", "s_W", "g_b", "s_b"), got, want):
        assert isinstance(g, np.ndarray) and g.dtype == np.float32 and g.shape == w.shape, (
            f"{name}: expected float32 {w.shape}, got {array_text(g)}"
        )


def _variance_bits(make):
    """dense_grad_var on one hand-picked layer: the reference's bits (the fixed order of
    docs/algorithm.md section 2, decision 14)."""

    def run(impl):
        x, delta = make()
        got, err = call(impl.dense_grad_var, x.copy(), delta.copy())
        assert_same_outcome("dense_grad_var", err, None)
        want = ref.dense_grad_var(x, delta)
        assert isinstance(got, (tuple, list)) and len(got) == 4, "must return (g_W, s_W, g_b, s_b)"
        for name, g, w in zip(("g_W", "s_W", "g_b", "s_b"), got, want):
            assert_bits_equal(f"dense_grad_var {name}", g, w)

    return run


def _variance_values(batch: int):
    def run(impl):
        _check_variance_values(impl, batch)

    return run


def _check_variance_values(impl, batch):
    """g_W, s_W, g_b, s_b of one fixed layer within (B + 2) float32 roundings of the sum of
    absolute terms of the exact per-sample values (the Hypothesis property's bound)."""
    rng = np.random.default_rng(8)
    x = variance_cases.normal(rng, (batch, 3)).astype(f32)
    delta = (variance_cases.normal(rng, (batch, 4)) / batch).astype(f32)
    x[0, 0], delta[1, 2] = 0.0, -0.0
    got = impl.dense_grad_var(x.copy(), delta.copy())
    want = ref.per_sample_dense_grad_var(x, delta)
    x64, d64 = x.astype(np.float64), delta.astype(np.float64)
    scale = (np.abs(x64).T @ np.abs(d64), (x64 * x64).T @ (d64 * d64), np.abs(d64).sum(0), (d64 * d64).sum(0))
    for name, g, w, sc in zip(("g_W", "s_W", "g_b", "s_b"), got, want, scale):
        bound = (x.shape[0] + 2) * 2.0**-24 * sc + 2.0**-140
        err = np.abs(np.asarray(g, np.float64) - w.astype(np.float64))
        assert g.shape == w.shape and (err <= bound).all(), (
            f"dense_grad_var {name}: got {array_text(np.ravel(g))}, per-sample {array_text(np.ravel(w))}; "
            f"x={array_text(x.ravel())} delta={array_text(delta.ravel())}"
        )


BAD_LAYERS = {
    "x_float64": lambda x, d: (x.astype(np.float64), d),
    "delta_float64": lambda x, d: (x, d.astype(np.float64)),
    "x_1d": lambda x, d: (x[0], d),
    "delta_3d": lambda x, d: (x, d[None]),
    "delta_3d_same_batch": lambda x, d: (x, d[..., None]),
    "x_3d_same_batch": lambda x, d: (x[..., None], d),
    "batch_mismatch": lambda x, d: (x, d[1:]),
    "batch_mismatch_x_shorter": lambda x, d: (x[1:], d),
    "empty_batch": lambda x, d: (x[:0], d[:0]),
    "x_list": lambda x, d: (x.tolist(), d),
    "x_int32": lambda x, d: (x.astype(np.int32), d),
    "delta_float16": lambda x, d: (x, d.astype(np.float16)),
    "x_complex64": lambda x, d: (x.astype(np.complex64), d),
    "delta_list_and_x_float64": lambda x, d: (x.astype(np.float64), d.tolist()),
}


def _conv_bits(make, form):
    """conv_grad_var on one hand-picked layer in one form: the reference's bits (the fixed
    order of docs/algorithm.md section 2.1, decision 11); inputs unmodified."""

    def run(impl):
        x, delta = make()
        inputs = {"patches": x, "delta": delta}
        compare_grad_var(f"conv_grad_var({form})", impl.conv_grad_var, ref.conv_grad_var, inputs, form)

    return run


def _bad_input_run(op: str, name: str, make_args):
    """``op(*make_args())`` is refused by the reference; the implementation raises the same
    class with the same ``name`` (dense_grad_var, conv_grad_var input errors)."""

    def run(impl):
        args = make_args()
        _, want_err = call(getattr(ref, op), *args)
        _, got_err = call(getattr(impl, op), *args)
        assert want_err is not None, f"the reference accepts {name}"
        assert_same_outcome(f"{op}({name})", got_err, want_err)

    return run


def _bad_conv_run(name):
    bad = variance_cases.BAD_CONVS[name]
    return _bad_input_run(
        "conv_grad_var", name, lambda: bad(np.ones((3, 2, 4), f32), np.ones((3, 2, 5), f32), "exact")
    )


def _bad_layer_run(name):
    bad = BAD_LAYERS[name]
    return _bad_input_run("dense_grad_var", name, lambda: bad(np.ones((3, 2), f32), np.ones((3, 4), f32)))


# --------------------------------------------------------------------------------------
# The largest segment (slow: 2^27 elements, about 4 GiB with the copies)
# --------------------------------------------------------------------------------------


def _max_index_run(impl):
    n = 1 << 27
    r = np.zeros(n, f32)
    r[[0, n - 2, n - 1]] = [1.0, -2.0, 1.5]
    v = np.zeros(n, f32)
    g = np.zeros(n, f32)
    g[n - 3] = 0.75
    s = np.zeros(n, f32)
    want = compare_step(impl, "vgc", r, v, g, s, ref.VGCParams(), segment_id=1)
    message = ref.encode_message([want])
    assert_bytes_equal("encode_message(max index packet)", impl.encode_message([want]), message)
    assert_packets_equal("decode_message(max index message)", impl.decode_message(message), [want])


def _largest_segment_run(impl):
    """A segment of exactly 2^27 elements is valid: a step on one gets past the length
    checks to the first NaN of s, at index 0. The state is lazily zero-filled and g a
    zero-stride view, so the case reads 2^27 elements a few times and writes almost none
    (a second or two, well under 1 GB), where the slow case runs a real step."""
    n = ref.MAX_SEGMENT_LEN
    g = np.broadcast_to(f32(0.0), (n,))
    s = np.zeros(n, f32)
    s[0] = np.nan
    params = ref.VGCParams()
    _, want_err = call(ref.vgc_step, ref.SegmentState(3, np.zeros(n, f32), np.zeros(n, f32)), g, s, params)
    state = ref.SegmentState(3, np.zeros(n, f32), np.zeros(n, f32))
    _, got_err = call(impl.vgc_step, state, g, s, params)
    assert_same_outcome("vgc_step on a segment of 2^27 elements, the largest there is", got_err, want_err)
    for name in ("r", "v"):
        changed = np.flatnonzero(getattr(state, name).view(np.uint32))
        assert changed.size == 0, f"{name}[{changed[:1]}] changed by a rejected step"


# --------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------


def all_cases() -> list[Case]:
    """Every case of the deterministic layer, in a fixed order."""
    cases: list[Case] = []
    for c in VGC_EDGE_CASES:
        cases.append(
            Case(
                f"vgc.{c.name}",
                EDGE_RULES[c.name],
                _step_run("vgc", c, 3),
                c.why,
                "test_vgc_step_equals_reference_on_edge_cases",
            )
        )
    for c, rules in NEW_VGC_CASES:
        cases.append(Case(f"vgc.{c.name}", rules, _step_run("vgc", c, 3), c.why))
    for c in STROM_EDGE_CASES:
        cases.append(
            Case(
                f"strom.{c.name}",
                STROM_RULES,
                _step_run("strom", c, 1),
                c.why,
                "test_strom_step_equals_reference_on_edge_cases",
            )
        )
    for c, rules in NEW_STROM_CASES:
        cases.append(Case(f"strom.{c.name}", rules, _step_run("strom", c, 1), c.why))
    cases += [_segment_id_case(kind, i) for kind in ("vgc", "strom") for i in (0, 2**31, 2**32 - 1)]
    cases += [_long_segment_case(kind) for kind in ("vgc", "strom")]
    cases += [
        _multi_step("vgc_feedback", "vgc", {"alpha": 1.5, "zeta": 0.9}, 6, 11),
        _multi_step(
            "hybrid_reset", "vgc", {"alpha": 0.5, "zeta": 0.99, "tau": 0.01, "residual": "reset"}, 6, 12
        ),
        _multi_step("strom", "strom", {"tau": 0.3}, 6, 13),
    ]
    cases += _invalid_cases()
    for name, data in MALFORMED_MESSAGES.items():
        rules = (f"format:{MALFORMED_RULES[name]}", "error:5")
        cases.append(
            Case(
                f"decode.{name}",
                rules,
                _decode_run(data, name, True),
                prop="test_decode_rejects_malformed_message",
            )
        )
        cases.append(
            Case(
                f"decode_accumulate.{name}",
                (*rules, "algorithm:7"),
                _decode_accumulate_run(data, name),
                prop="test_decode_accumulate_rejects_malformed_message_out_untouched",
            )
        )
    for name, (data, rules) in _more_malformed().items():
        cases.append(Case(f"decode.{name}", (*rules, "error:5"), _decode_run(data, name, True)))
        cases.append(
            Case(f"decode_accumulate.{name}", (*rules, "algorithm:7"), _decode_accumulate_run(data, name))
        )
    for name in NOT_BYTES:
        cases.append(Case(f"decode_not_bytes.{name}", ("error:10",), _decode_not_bytes_run(name)))
    for name, packets in VALID_MESSAGES.items():
        cases.append(Case(f"encode.{name}", ("format:canonical", "decision:10"), _encode_run(name, packets)))
    for name, packets in INVALID_PACKETS.items():
        cases.append(
            Case(f"encode_invalid.{name}", ("format:encoder", "error:9"), _encode_invalid_run(name, packets))
        )
    for c in AGGREGATE_EDGE_CASES:
        cases.append(
            Case(
                f"aggregate.{c.name}",
                ("algorithm:7", "decision:9"),
                _aggregate_run(c, False),
                c.why,
                "test_aggregation_rank_order_edge_cases",
            )
        )
    for c in [*AGGREGATE_EDGE_CASES, *NEW_AGGREGATE_CASES]:
        cases.append(
            Case(f"aggregate_out.{c.name}", ("algorithm:7", "decision:9"), _aggregate_run(c, True), c.why)
        )
    for c in NEW_AGGREGATE_CASES:
        cases.append(
            Case(f"aggregate.{c.name}", ("algorithm:7", "decision:9"), _aggregate_run(c, False), c.why)
        )
    for name, (messages, sizes) in BAD_AGGREGATIONS.items():
        rules = ("algorithm:7", "error:6") if "malformed" not in name else ("algorithm:7", "error:5")
        if name == "no_messages":
            rules = ("algorithm:7", "error:7")
        cases.append(
            Case(
                f"aggregate_bad.{name}",
                rules,
                _bad_aggregation_run(name, messages, sizes, lambda: None),
                prop="test_aggregation_rejects_bad_input_out_untouched",
            )
        )
    for name, (messages, sizes) in _precedence_aggregations().items():
        cases.append(
            Case(
                f"aggregate_bad.{name}",
                ("algorithm:7", "error:pair"),
                _bad_aggregation_run(name, messages, sizes, lambda: None),
                "which error wins when two faults meet (docs/conformance.md)",
            )
        )
    good = [valid_message(), valid_message()]
    for name, spec in _bad_outs().items():
        factory, messages, sizes = spec if isinstance(spec, tuple) else (spec, good, VALID_SIZES)
        rules = ("algorithm:7", "error:6") if name.startswith("n_larger") else ("algorithm:7", "error:7")
        cases.append(
            Case(f"aggregate_bad.{name}", rules, _bad_aggregation_run(name, messages, sizes, factory))
        )
    cases.append(Case("variance.inputs_unmodified", ("algorithm:2", "error:8"), _variance_unmodified))
    cases.append(Case("variance.values_within_bound", ("algorithm:2",), _variance_values(6)))
    cases.append(Case("variance.batch_300", ("algorithm:2",), _variance_values(300)))
    for name in BAD_LAYERS:
        cases.append(Case(f"variance.{name}", ("algorithm:2", "error:8"), _bad_layer_run(name)))
    for name, make in variance_cases.EDGE_LAYERS.items():
        rules = ("algorithm:2", "decision:14") + (("decision:3",) if name == "no_fma" else ())
        cases.append(Case(f"variance.bits_{name}", rules, _variance_bits(make), variance_cases.WHY[name]))
    for name in variance_cases.BAD_CONVS:
        cases.append(Case(f"conv.{name}", ("algorithm:2.1", "error:11"), _bad_conv_run(name)))
    cases += _kind_cases()
    for name, make in variance_cases.CONV_EDGE_LAYERS.items():
        for form in ("exact", "approx"):
            rules = ("algorithm:2.1", "decision:11") + (("decision:3",) if name == "no_fma" else ())
            cases.append(
                Case(
                    f"conv.bits_{name}.{form}",
                    rules,
                    _conv_bits(make, form),
                    variance_cases.CONV_WHY[name],
                    "test_conv_grad_var_equals_reference_on_edge_cases",
                )
            )
    cases.append(
        Case(
            "step.largest_segment_accepted",
            ("algorithm:1", "decision:1", "error:2"),
            _largest_segment_run,
            "n = 2^27 is a valid length: the step reports s's NaN, not g's length",
        )
    )
    cases.append(
        Case(
            "slow.max_index_step",
            ("algorithm:1", "algorithm:3.4", "decision:1"),
            _max_index_run,
            "n = 2^27: index 2^27 - 1 through a real step",
            slow=True,
        )
    )
    return cases


#: docs/conformance.md, "What each argument accepts": each row's tag -> the cases that show
#: it (a regular expression over case ids). A row of that table without an entry here, or
#: an entry whose expression matches no case, fails tests/test_conformance_kit.py.
ACCEPTANCE = {
    "accept:g.contiguous": r"vgc\.n_300|strom\.n_300",
    "accept:g.strided": r"(vgc|strom)\.strided_g_and_s",
    "accept:g.read_only": r"(vgc|strom)\.read_only_g_and_s",
    "accept:g.empty": r"(vgc|strom)\.empty_segment",
    "accept:g.largest": r"step\.largest_segment_accepted",
    "accept:s.negative_zero": r"invalid\.vgc-s_negative_zero_ok",
    "reject:g.not_an_array": r"invalid\.(vgc|strom)-[gs]_list|invalid\.vgc-s_none",
    "reject:g.dtype": r"invalid\.(vgc|strom)-[gs]_(float64|int32|float16)",
    "reject:g.not_1d": r"invalid\.(vgc|strom)-[gs]_(2d|0d|2d_n1)",
    "reject:g.length": r"invalid\.(vgc|strom)-(g_too_short|s_too_long)",
    "accept:data.kinds": r"decode\.(memoryview|packets_outlive_the_buffer)",
    "reject:data.other": r"decode_not_bytes\..*",
    "accept:messages.sequence": r"aggregate\..*",
    "accept:messages.one": r"aggregate(_out)?\.one_rank",
    "reject:messages.empty": r"aggregate_bad\.no_messages|aggregate_bad\.empty_messages_before_bad_sizes",
    "reject:messages.entry": r"aggregate_bad\.not_bytes_of_rank_1_before_layout_of_rank_0",
    "reject:sizes.entry": r"aggregate_bad\.(bad_sizes_before_layout|format_before_bad_sizes"
    r"|negative_size_before_layout|size_above_2_27_before_layout)",
    "accept:out.arrays": r"aggregate_out\..*",
    "accept:out.strided_tuple": r"aggregate_out\.tuple_of_strided_views",
    "reject:out.count": r"aggregate_bad\.out_too_(few|many)_arrays",
    "reject:out.array": r"aggregate_bad\.out_(wrong_length|float64|2d|list|read_only|read_only_first)",
    "accept:packets.sequence": r"encode\..*",
    "accept:packets.empty": r"encode\.empty",
    "reject:packets.not_a_packet": r"encode_invalid\.not_a_packet",
    "reject:packets.field": r"encode_invalid\.(segment_id_(too_large|negative|float|bool)|n_negative"
    r"|param_too_large)",
    "reject:packets.words": r"encode_invalid\.words_2d",
    "accept:x.empty_features": r"variance\.empty_(inputs|outputs)",
    "accept:x.one_sample": r"variance\.bits_squares_rounded_first",
    "reject:x.array": r"variance\.(x_float64|delta_float64|x_int32|delta_float16|x_complex64|x_list"
    r"|delta_list_and_x_float64)",
    "reject:x.shape": r"variance\.(x_1d|delta_3d|delta_3d_same_batch|x_3d_same_batch)",
    "reject:x.batch": r"variance\.(batch_mismatch|batch_mismatch_x_shorter|empty_batch)",
    "accept:patches.forms": r"conv\.bits_.*\.(exact|approx)",
    "accept:patches.default_form": r"conv\.default_form_is_exact",
    "accept:patches.empty_taps": r"conv\.empty_taps",
    "accept:patches.one_sample_one_position": r"conv\.bits_(squares_rounded_first|samples_in_order)\."
    r"(exact|approx)",
    "reject:patches.array": r"conv\.(patches_float64|patches_list|delta_2d)",
    "reject:patches.shape": r"conv\.(positions_mismatch|empty_batch)",
    "reject:form.unknown": r"conv\.(unknown_form|float64_and_unknown_form)",
}


def _with_acceptance_tags(cases: list[Case]) -> list[Case]:
    """Each case with the acceptance-table tags (:data:`ACCEPTANCE`) whose expression matches its id."""
    import dataclasses
    import re

    tagged = []
    for c in cases:
        tags = tuple(tag for tag, pattern in ACCEPTANCE.items() if re.fullmatch(pattern, c.id))
        tagged.append(dataclasses.replace(c, rules=c.rules + tags) if tags else c)
    return tagged


CASES = _with_acceptance_tags(all_cases())
BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"


def run_case(impl, case: Case) -> str | None:
    """None when ``impl`` agrees with the reference on ``case``, else the failure message."""
    try:
        case.run(impl)
    except AssertionError as err:
        return str(err)
    except Exception as err:  # the adapter itself crashed: also a failure, named as such
        return f"unexpected {type(err).__name__}: {err}"
    return None


# --------------------------------------------------------------------------------------
# Coverage: each numbered rule of the normative docs and the cases that pin it
# --------------------------------------------------------------------------------------

#: Rules of the normative docs that no operation of the adapter protocol can show.
NOT_IN_PROTOCOL = {
    "decision:13": "top-k is not an operation of the adapter protocol",
}


def doc_rules(docs_dir) -> list[str]:
    """The numbered rules of docs/algorithm.md, docs/format.md and the error table of
    docs/conformance.md, as rule tags, in document order."""
    import re
    from pathlib import Path

    docs = Path(docs_dir)
    rules = []
    algorithm = (docs / "algorithm.md").read_text()
    section3 = algorithm.split("## 3. One step on one segment")[1].split("\n## ")[0]
    rules += [f"algorithm:3.{m}" for m in re.findall(r"^(\d)\. \*\*", section3, flags=re.M)]
    rules.append("algorithm:3.hybrid")
    rules += ["algorithm:1", "algorithm:2", "algorithm:2.1", "algorithm:4", "algorithm:7"]
    decisions = algorithm.split("## Decisions of this project")[1]
    rules += [f"decision:{m}" for m in re.findall(r"^(\d+)\. ", decisions, flags=re.M)]
    fmt = (docs / "format.md").read_text().split("## What a decoder rejects")[1].split("\n## ")[0]
    rules += [f"format:{m}" for m in re.findall(r"^\|\s*(\d+)\s*\|", fmt, flags=re.M)]
    rules += ["format:order", "format:encoder", "format:canonical"]
    conformance = (docs / "conformance.md").read_text()
    table = conformance.split("| situation | exception")[1].split("\n\n")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    rules += [f"error:{i}" for i in range(1, len(rows) + 1)]
    rules.append("error:pair")
    accepts = conformance.split("### What each argument accepts")[1].split("\n## ")[0]
    rules += re.findall(r"^\| `((?:accept|reject):[\w.]+)` \|", accepts, flags=re.M)
    return rules


def coverage_table(docs_dir) -> str:
    """The Markdown table of docs/conformance.md, "Coverage": rule -> the cases that pin it."""
    lines = ["| rule | cases |", "|---|---|"]
    for rule in doc_rules(docs_dir):
        ids = [c.id for c in CASES if rule in c.rules]
        if rule in NOT_IN_PROTOCOL:
            text = f"none: {NOT_IN_PROTOCOL[rule]}"
        else:
            shown = ", ".join(f"`{i}`" for i in ids[:4])
            text = shown + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
        lines.append(f"| `{rule}` | {text} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from vgc_ref._cli import ArgumentParser
    from vgc_ref.conformance.adapter import DEFAULT_IMPL, ENV_IMPL, load_impl

    parser = ArgumentParser(
        prog="python -m vgc_ref.conformance.table",
        description="Run the kit's deterministic cases (seconds, no Hypothesis) against an implementation.",
    )
    parser.add_argument(
        "--impl", help=f"module, .py file or backend:NAME (default ${ENV_IMPL} or {DEFAULT_IMPL})"
    )
    parser.add_argument("-k", dest="select", help="only the cases whose id contains this text")
    parser.add_argument("--case", action="append", default=[], help="run this case id (repeatable)")
    parser.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failing case")
    parser.add_argument("--slow", action="store_true", help="also run the slow cases (n = 2^27)")
    parser.add_argument("--list", action="store_true", help="print the case ids with their rules")
    parser.add_argument("--coverage", metavar="DOCS", help="print the coverage table for the docs in DOCS")
    args = parser.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.id}  [{', '.join(c.rules)}]{'  (slow)' if c.slow else ''}")
        return 0
    if args.coverage:
        sys.stdout.write(coverage_table(args.coverage))
        return 0
    import os

    spec = args.impl or os.environ.get(ENV_IMPL) or DEFAULT_IMPL
    try:
        impl = load_impl(spec)
    except Exception as exc:
        print(f"vgc_ref.conformance.table: cannot load implementation {spec!r}: {type(exc).__name__}: {exc}")
        return 2
    unknown = [i for i in args.case if i not in BY_ID]
    if unknown:
        parser.error(f"no such case: {', '.join(unknown)}")
    selected = [BY_ID[i] for i in args.case] or [
        c for c in CASES if (args.slow or not c.slow) and (args.select is None or args.select in c.id)
    ]
    import warnings

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # overflow to inf is compared, not noise
    failed = 0
    for case in selected:
        message = run_case(impl, case)
        if message is not None:
            failed += 1
            print(f"FAIL {case.id} [{', '.join(case.rules)}]\n  {message}")
            if args.exitfirst:
                break
    passed = len(selected) - failed if not args.exitfirst or not failed else "-"
    print(f"vgc_ref.conformance.table: {spec}: {passed} passed, {failed} failed of {len(selected)} cases")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
