"""A stateful test: the reference and each backend driven through many steps side by side.

VGC carries r and v from step to step, so a difference that one step hides (a wrong v
that has not yet changed a decision) shows up later. After every step the machine
compares the packet bytes and the bits of r and v; every few steps it aggregates the
messages of the last steps as P workers and compares g_hat bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from strategies import F32_MAX, dyadic_vectors, vectors

from vgc_ref import NonFiniteError, SegmentState, StromParams, VGCParams
from vgc_ref import backends as registry
from vgc_ref.encoding import encode_message

REFERENCE = registry.get_backend("numpy")
SIMULATED = {"numba-cuda"}


def _bits(x):
    return np.asarray(x, np.float32).view(np.uint32)


def machine_for(name: str):
    """A RuleBasedStateMachine class that compares backend ``name`` with the reference."""
    max_n = 12 if name in SIMULATED else 96

    class BackendAgreesWithReference(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            try:
                self.backend = registry.get_backend(name)
            except (ImportError, RuntimeError) as err:
                pytest.skip(f"backend {name!r} cannot run here: {err}")
            self.messages: list[bytes] = []

        @initialize(n=st.integers(0, max_n))
        def start(self, n):
            self.n = n
            self.ref = SegmentState.zeros(n)  # segment 0: aggregate() needs ids 0 .. S-1
            self.state = SegmentState.zeros(n)

        def _inputs(self, data, dyadic):
            g = data.draw(dyadic_vectors(self.n) if dyadic else vectors(self.n, -1e6, 1e6), label="g")
            s = data.draw(vectors(self.n, 0.0, 1e6), label="s")
            return g, s

        @rule(
            data=st.data(),
            dyadic=st.booleans(),
            alpha=st.sampled_from([2.0, 1.0, 0.25, 16.0]),
            zeta=st.sampled_from([0.999, 0.5, 1.0, 0.0]),
            tau=st.sampled_from([0.0, 0.0, 0.5]),
            residual=st.sampled_from(["feedback", "reset"]),
        )
        def vgc_step(self, data, dyadic, alpha, zeta, tau, residual):
            g, s = self._inputs(data, dyadic)
            params = VGCParams(alpha=alpha, zeta=zeta, tau=tau, residual=residual)
            want = REFERENCE.vgc_step(self.ref, g, s, params)
            got = self.backend.vgc_step(self.state, g, s, params)
            assert got == want
            message = encode_message([got])
            assert message == encode_message([want])
            self.messages.append(message)

        @rule(data=st.data(), tau=st.sampled_from([0.5, 1.0, 2.0**-10]))
        def strom_step(self, data, tau):
            g, _ = self._inputs(data, dyadic=False)
            want = REFERENCE.strom_step(self.ref, g, StromParams(tau))
            got = self.backend.strom_step(self.state, g, StromParams(tau))
            assert encode_message([got]) == encode_message([want])

        @precondition(lambda self: self.n > 0)
        @rule(data=st.data(), bad=st.sampled_from([np.nan, np.inf, -1.0, F32_MAX]))
        def bad_step(self, data, bad):
            """Bad input: the same error, and the state stays as it was."""
            g, s = self._inputs(data, dyadic=False)
            i = data.draw(st.integers(0, self.n - 1), label="bad index")
            if bad == F32_MAX:
                g[i] = F32_MAX
                self.state.r[i] = self.ref.r[i] = F32_MAX  # r + g overflows
            else:
                s[i] = bad
            with pytest.raises(NonFiniteError) as want:
                REFERENCE.vgc_step(self.ref, g, s, VGCParams())
            with pytest.raises(NonFiniteError) as got:
                self.backend.vgc_step(self.state, g, s, VGCParams())
            assert str(got.value) == str(want.value)
            if bad == F32_MAX:
                self.state.r[i] = self.ref.r[i] = 0.0

        @precondition(lambda self: len(self.messages) >= 2)
        @rule(ranks=st.integers(2, 4))
        def aggregate(self, ranks):
            """The last steps' messages as P workers: bit-identical g_hat."""
            messages = self.messages[-ranks:]
            want = REFERENCE.decode_accumulate(messages, [self.n])
            got = self.backend.decode_accumulate(messages, [self.n])
            np.testing.assert_array_equal(_bits(got[0]), _bits(want[0]))

        @invariant()
        def same_state(self):
            if hasattr(self, "ref"):
                np.testing.assert_array_equal(_bits(self.state.r), _bits(self.ref.r))
                np.testing.assert_array_equal(_bits(self.state.v), _bits(self.ref.v))

    BackendAgreesWithReference.__name__ = f"BackendAgreesWithReference[{name}]"
    return BackendAgreesWithReference


@pytest.mark.parametrize("name", registry.backend_names())
def test_backend_agrees_with_the_reference_step_after_step(name):
    """Packets, r, v and g_hat stay identical over many steps with the same inputs."""
    if name in SIMULATED:
        budget = settings(max_examples=4, stateful_step_count=8)
    else:
        budget = settings(max_examples=25, stateful_step_count=25)
    machine = machine_for(name)
    machine.TestCase.settings = budget
    machine.TestCase().runTest()
