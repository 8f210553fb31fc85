"""A one-process tour of VGC: ``python -m vgc_ref``.

Four simulated workers see noisy gradients of the same quadratic; each compresses with
VGC, the messages are aggregated in rank order, and the printout shows how many
elements were sent and the compression ratio (docs/algorithm.md section 8). The MPI demo
(``python -m mpi_demo``) is the full-size version of this.
"""

from __future__ import annotations

import numpy as np

from vgc_ref import Compressor, decode_accumulate


def main(steps: int = 50, workers: int = 4, n: int = 10_000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    signal = (rng.standard_normal(n) * 0.01).astype(np.float32)  # the true gradient
    noise = np.float32(0.1)
    comps = [Compressor([n], "vgc", alpha=2.0, zeta=0.999) for _ in range(workers)]
    dense_bytes = message_bytes = sent = 0
    g_sum = np.zeros(n, np.float64)
    print(f"{workers} workers, {n} parameters, {steps} steps; alpha=2, zeta=0.999")
    for step in range(steps):
        messages = []
        for comp in comps:
            batch = 16
            samples = signal + noise * rng.standard_normal((batch, n)).astype(np.float32)
            g = samples.mean(axis=0, dtype=np.float32)  # gradient of the mean loss
            s = (samples * samples).sum(axis=0, dtype=np.float32) / np.float32(batch * batch)
            messages.append(comp.message([g], [s]))
        (g_hat,) = decode_accumulate(messages, [n])
        g_sum += g_hat
        dense_bytes += 4 * n * workers
        message_bytes += sum(len(m) for m in messages)
        sent += int(np.count_nonzero(g_hat))
        if step % 10 == 9:
            corr = np.corrcoef(g_sum, signal)[0, 1]
            print(
                f"step {step + 1:3d}: compression ratio {dense_bytes / message_bytes:7.1f}x, "
                f"elements with a nonzero aggregate {sent / (n * (step + 1)):6.2%}, "
                f"corr(sum of g_hat, true gradient) {corr:.3f}"
            )


if __name__ == "__main__":
    from vgc_ref._cli import ArgumentParser

    ArgumentParser(prog="python -m vgc_ref", description=__doc__.split("\n")[0]).parse_args()
    main()
