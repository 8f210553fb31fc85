"""pytest configuration of the conformance suite.

Environment (the CLI, ``python -m vgc_ref.conformance``, sets these from its options):

* ``VGC_IMPL`` -- the implementation under test (default ``vgc_ref``, the reference);
* ``VGC_MAX_EXAMPLES`` -- Hypothesis examples per property (default 50);
* ``VGC_DERANDOMIZE=1`` -- a fixed Hypothesis seed per property (reproducible runs);
* ``VGC_NO_SHRINK=1`` -- report the first failing example without shrinking it.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

from vgc_ref.conformance.adapter import Impl, load_impl

DEFAULT_MAX_EXAMPLES = 50


def _profile() -> None:
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    if os.environ.get("VGC_NO_SHRINK") != "1":
        phases.append(Phase.shrink)
    settings.register_profile(
        "vgc-conformance",
        max_examples=int(os.environ.get("VGC_MAX_EXAMPLES", DEFAULT_MAX_EXAMPLES)),
        derandomize=os.environ.get("VGC_DERANDOMIZE") == "1",
        deadline=None,
        database=None,
        phases=phases,
        print_blob=False,
        report_multiple_bugs=False,  # one failure per property, never an ExceptionGroup
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    settings.load_profile("vgc-conformance")


def pytest_configure(config):
    _profile()
    # Sums that overflow to infinity are part of what is compared (aggregation of large values).
    config.addinivalue_line("filterwarnings", "ignore:overflow encountered:RuntimeWarning")


@pytest.fixture(scope="session")
def impl() -> Impl:
    """The implementation under test."""
    return load_impl()


def pytest_report_header(config):
    return f"vgc_ref conformance: implementation {os.environ.get('VGC_IMPL') or 'vgc_ref'}"
