"""CI's deterministic subset of ``make mutation``: mutants of the semantic modules that once
survived the kit's deterministic layer (or fell only to its Hypothesis layer) must stay
killed by the deterministic layer alone.

Each mutant is one line of a module edited by hand, the way cosmic-ray wrote it, in a copy
of the modules built by tools/mutation.py (the reference stays pristine); the copy runs
through every case of :mod:`vgc_ref.conformance.table` until one fails. No mutation tool
is needed. If the reference's source changes so that a line below no longer occurs, the
test fails and the line must be updated (or the entry dropped, with the reason, when the
code it tested is gone).
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import mutation  # noqa: E402

#: (module, line before, line after, what kills it).
SUBSET = [
    ("encoding", "if E > 0 and count == 0:", "if E > 1 and count == 0:", "decode.vgc_E_1_empty"),
    ("encoding", '("reserved", 9, 3),', '("reserved", 9, 2),', "decode.cut_to_27"),
    (
        "encoding",
        '_check_fits("magic", 0, 4, limit, length)',
        '_check_fits("magic", 0, 3, limit, length)',
        "cut_to_7",
    ),
    (
        "encoding",
        '_check_fits("segment_count", 8, 4, limit, length)',
        '_check_fits("segment_count", 8, 3, limit, length)',
        "decode.cut_to_15",
    ),
    ("aggregate", "if p.n != sizes[p.segment_id]:", "if p.n < sizes[p.segment_id]:", "n_larger_than_size"),
    (
        "state",
        "if not 0 <= segment_id <= MAX_SEGMENT_ID:",
        "if not 0 < segment_id <= MAX_SEGMENT_ID:",
        "vgc.segment_id_0",
    ),
    (
        "criterion",
        "candidate = (r * r > params.alpha32 * v) & (np.abs(r) >= params.tau32)",
        "candidate = (r * r >= params.alpha32 * v) & (np.abs(r) >= params.tau32)",
        "vgc.tie_at_threshold",
    ),
    ("quantize", "SQRT2_MANTISSA = 0x3504F3", "SQRT2_MANTISSA = 0x3504F4", "vgc.sqrt2_rounding"),
    ("encoding", "if count != n:", "if count < n:", "decode.dense_count_above_n"),
    ("encoding", "if count != n:", "if count is not n:", "encode.dense_300"),
    ("aggregate", "if len(out) != len(sizes):", "if len(out) is not len(sizes):", "three_hundred_segments"),
    (
        "state",
        "if n is not None and x.shape[0] != n:",
        "if n is not None and x.shape[0] is not n:",
        "vgc.n_300",
    ),
    ("aggregate", "if p.n != sizes[p.segment_id]:", "if p.n is not sizes[p.segment_id]:", "long_segments"),
    (
        "encoding",
        "if not isinstance(data, (bytes, bytearray, memoryview)):",
        "if not isinstance(data, (bytes, bytearray)):",
        "decode.memoryview",
    ),
    ("encoding", "E = param & VGC_E_MASK", "E = param % VGC_E_MASK", "decode.vgc_E_255_empty"),
    ("state", "if x.dtype != np.float32:", "if x.dtype > np.float32:", "invalid.vgc-g_int32"),
    ("state", "if x.ndim != 1:", "if x.ndim < 1:", "invalid.vgc-g_2d_n1"),
    (
        "criterion",
        'if residual == "feedback":',
        'if residual is "feedback":',
        "vgc.residual_feedback_not_interned",
    ),
    ("quantize", "MAX_EXPONENT = 254", "MAX_EXPONENT = 255", "vgc.near_float32_max"),
]


@pytest.mark.parametrize(
    ("module", "before", "after", "killer"), SUBSET, ids=[f"{m}:{a.strip()[:40]}" for m, _, a, _ in SUBSET]
)
def test_listed_mutant_is_killed_by_the_table(tmp_path, module, before, after, killer):
    """The copy with this one edit fails at least one case of the deterministic layer."""
    package = f"vgc_mut_{abs(hash((module, before, after))) % 10**8}"
    mutation.build(tmp_path, package, edit=(module, before, after))
    sys.path.insert(0, str(tmp_path))
    try:
        from vgc_ref.conformance.adapter import load_impl
        from vgc_ref.conformance.table import CASES, run_case

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # overflow to inf, and the mutant's own SyntaxWarning
            impl = load_impl(package)
            failed = next((c.id for c in CASES if not c.slow and run_case(impl, c) is not None), None)
        assert failed is not None, f"{module}: {before!r} -> {after!r} survives the table (was: {killer})"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()


def test_unmutated_copy_passes_the_table(tmp_path):
    """The copy itself (no edit) passes every case, so a kill above is the edit's doing."""
    mutation.build(tmp_path, "vgc_mut_pristine")
    sys.path.insert(0, str(tmp_path))
    try:
        from vgc_ref.conformance.adapter import load_impl
        from vgc_ref.conformance.table import CASES, run_case

        impl = load_impl("vgc_mut_pristine")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            failures = {c.id: run_case(impl, c) for c in CASES if not c.slow}
        assert not {k: v for k, v in failures.items() if v is not None}
    finally:
        sys.path.remove(str(tmp_path))
