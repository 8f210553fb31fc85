"""A stateful comparison: the implementation and the reference driven through many steps.

VGC carries r and v from step to step, so a difference may show only after several
steps (a decay applied once too often, a residual that drifts). Hypothesis's rule-based
state machine runs one worker with several segments (VGC, hybrid, Strom, and DENSE
baseline) through a random sequence of steps, rejected steps and aggregations, and
compares packets, messages, state and g_hat with the reference after every rule.
"""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

import vgc_ref as ref
from vgc_ref.conformance.compare import (
    assert_bits_equal,
    assert_bytes_equal,
    assert_packets_equal,
    assert_same_outcome,
    assert_state_equal,
    call,
)
from vgc_ref.conformance.strategies import strom_taus, vectors, vgc_hyperparameters


def _machine(impl):
    class StepByStep(RuleBasedStateMachine):
        """One worker: segments 0 .. S-1 with a method each; the reference runs beside it."""

        @initialize(
            layout=st.lists(
                st.tuples(st.integers(0, 24), st.sampled_from(["vgc", "strom", "dense"])),
                min_size=1,
                max_size=3,
            ),
            hyper=vgc_hyperparameters(),
            tau=strom_taus(),
        )
        def setup(self, layout, hyper, tau):
            self.sizes = [n for n, _ in layout]
            self.methods = [m for _, m in layout]
            self.vgc_params = ref.VGCParams(**hyper)
            self.strom_params = ref.StromParams(tau)
            self.got = [ref.SegmentState.zeros(n, j) for j, n in enumerate(self.sizes)]
            self.want = [ref.SegmentState.zeros(n, j) for j, n in enumerate(self.sizes)]
            self.messages: list[bytes] = []

        def _inputs(self, data, j, bounded):
            n = self.sizes[j]
            lo, hi = (-1e6, 1e6) if bounded else (None, None)
            g = data.draw(vectors(n, lo, hi), label=f"g[{j}]")
            s = data.draw(vectors(n, 0.0, hi), label=f"s[{j}]")
            return g, s

        def _step(self, j, got_state, want_state, g, s):
            method = self.methods[j]
            if method == "vgc":
                return (
                    call(impl.vgc_step, got_state, g.copy(), s.copy(), self.vgc_params),
                    call(ref.vgc_step, want_state, g.copy(), s.copy(), self.vgc_params),
                )
            if method == "strom":
                return (
                    call(impl.strom_step, got_state, g.copy(), self.strom_params),
                    call(ref.strom_step, want_state, g.copy(), self.strom_params),
                )
            packet = ref.dense_packet(j, g)
            return (packet, None), (packet, None)

        @rule(data=st.data())
        def step(self, data):
            """Every segment steps; the packets and the message must equal the reference's."""
            got_packets, want_packets = [], []
            for j in range(len(self.sizes)):
                g, s = self._inputs(data, j, bounded=True)
                (got, got_err), (want, want_err) = self._step(j, self.got[j], self.want[j], g, s)
                assert_same_outcome(f"segment {j} step", got_err, want_err)
                if want_err is None:
                    got_packets.append(got)
                    want_packets.append(want)
            assert_packets_equal("packets", got_packets, want_packets)
            if len(want_packets) == len(self.sizes):
                message = ref.encode_message(want_packets)
                assert_bytes_equal("message", impl.encode_message(got_packets), message)
                self.messages.append(message)

        @rule(data=st.data(), j=st.integers(0, 2), bad=st.sampled_from([np.nan, np.inf, -1.0]))
        def rejected_step(self, data, j, bad):
            """A step with a non-finite g or a negative s: same error, state unchanged."""
            j %= len(self.sizes)
            if self.sizes[j] == 0 or self.methods[j] == "dense":
                return
            g, s = self._inputs(data, j, bounded=True)
            i = data.draw(st.integers(0, self.sizes[j] - 1), label="bad index")
            if bad < 0:
                s[i] = bad
            else:
                g[i] = bad
            (_, got_err), (_, want_err) = self._step(j, self.got[j], self.want[j], g, s)
            assert_same_outcome(f"segment {j} rejected step", got_err, want_err)

        @rule(ranks=st.integers(1, 4))
        def aggregate(self, ranks):
            """decode_accumulate of the last few messages equals the reference's g_hat."""
            if not self.messages:
                return
            messages = self.messages[-ranks:]
            want = ref.decode_accumulate(messages, self.sizes)
            got = impl.decode_accumulate(messages, self.sizes)
            for j, (g, w) in enumerate(zip(got, want)):
                assert_bits_equal(f"g_hat of segment {j}", g, w)

        @invariant()
        def same_state(self):
            for j, (got, want) in enumerate(zip(getattr(self, "got", []), getattr(self, "want", []))):
                assert_state_equal(f"segment {j} state", got, want)

    return StepByStep


def test_stateful_multistep_equals_reference(impl):
    """Through a random sequence of steps, rejected steps and aggregations, the packets,
    messages, r, v and g_hat stay bit-identical to the reference's."""
    machine = _machine(impl)
    current = settings()
    run_state_machine_as_test(
        machine,
        settings=settings(current, max_examples=max(5, current.max_examples // 2), stateful_step_count=12),
    )
