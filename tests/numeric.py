"""Central differences: the float64 gradient check shared by the demo's model tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def central_differences(
    params: Sequence[np.ndarray], loss: Callable[[], float], eps: float = 1e-6
) -> list[np.ndarray]:
    """d loss / d params[j][i] as (loss(p + eps) - loss(p - eps)) / (2 eps), element by element.

    ``loss`` reads ``params`` (changed in place and restored after each element).
    """
    grads = []
    for p in params:
        numeric = np.empty_like(p)
        for i in range(p.size):
            old = p[i]
            p[i] = old + eps
            up = loss()
            p[i] = old - eps
            down = loss()
            p[i] = old
            numeric[i] = (up - down) / (2 * eps)
        grads.append(numeric)
    return grads
