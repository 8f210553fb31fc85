"""The two models of the demo behind one interface: ``--model mlp`` and ``--model cnn``.

:func:`build` returns a :class:`Network` for a configuration and a data set; the driver
(:mod:`mpi_demo.train`) calls only its methods, so every method, backend, trace and
checkpoint works the same for both models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mpi_demo import cnn, model

MODELS = ("mlp", "cnn")


@dataclass(frozen=True)
class Network:
    """One model's segment layout and its steps 3-7 (docs/demo.md)."""

    kind: str
    layout: tuple[tuple[str, tuple[int, ...]], ...]
    sizes: tuple[int, ...] = ()  # the MLP's layer sizes
    length: int = 0  # the CNN's input length
    variance: str = "exact"  # the CNN's convolution variance form

    @property
    def seg_sizes(self) -> list[int]:
        return [int(np.prod(shape)) for _, shape in self.layout]

    @property
    def decay(self) -> list[bool]:
        """Whether each segment is a weight (weight decay applies) or a bias."""
        return [name.endswith(".W") for name, _ in self.layout]

    def describe(self) -> str:
        n = sum(self.seg_sizes)
        if self.kind == "mlp":
            return f"MLP {'-'.join(map(str, self.sizes))} ({n} parameters, {len(self.layout)} segments)"
        conv = sum(s for (name, _), s in zip(self.layout, self.seg_sizes) if name.startswith("conv"))
        chans = "-".join(str(shape[1]) for name, shape in self.layout[0::2] if name.startswith("conv"))
        return (
            f"CNN conv {chans} ({n} parameters, {100 * conv / n:.0f}% in convolutions, "
            f"{len(self.layout)} segments, {self.variance} conv variance)"
        )

    def init_params(self, seed: int) -> list[np.ndarray]:
        if self.kind == "mlp":
            return model.init_params(self.sizes, seed)
        return cnn.init_params(self.layout, seed)

    def gradients(
        self, params, x: np.ndarray, y: np.ndarray, ops
    ) -> tuple[np.ndarray, np.ndarray, list, Any]:
        """Steps 3-6: per-sample loss, logits, g of every segment, and what step 7 needs."""
        if self.kind == "mlp":
            xs, logits = model.forward(params, self.sizes, x, ops)
            loss, probs = model.softmax_xent(logits, y, ops)
            deltas = model.backward(params, self.sizes, xs, probs, y, ops)
            return loss, logits, model.weight_grads(xs, deltas, ops), (xs, deltas)
        patches, hs, flat, logits = cnn.forward(params, self.layout, x, ops)
        loss, probs = model.softmax_xent(logits, y, ops)
        deltas, d_dense = cnn.backward(params, self.layout, patches, hs, flat, probs, y, ops)
        saved = (patches, deltas, flat, d_dense)
        return loss, logits, cnn.weight_grads(*saved, ops), saved

    def variance_terms(self, saved, ops) -> list[np.ndarray]:
        """Step 7: s of every segment."""
        if self.kind == "mlp":
            return model.variance_terms(*saved, ops)
        return cnn.variance_terms(*saved, ops, self.variance)

    def logits(self, params, x: np.ndarray, ops) -> np.ndarray:
        if self.kind == "mlp":
            return model.forward(params, self.sizes, x, ops)[1]
        return cnn.forward(params, self.layout, x, ops)[3]

    def predict(self, params, x: np.ndarray, ops) -> np.ndarray:
        """Predicted class of every row: the first index of the largest logit."""
        return self.logits(params, x, ops).argmax(axis=1)


def build(config, n_features: int, n_classes: int) -> Network:
    """The network of ``config`` (its ``model``, ``hidden``, ``channels``, ``variance``)."""
    kind = getattr(config, "model", "mlp")
    if kind == "mlp":
        sizes = config.layer_sizes(n_features, n_classes)
        return Network("mlp", tuple(model.segment_layout(sizes)), sizes=sizes)
    layout = cnn.segment_layout(n_features, config.channels, n_classes)
    return Network("cnn", tuple(layout), length=n_features, variance=config.variance)
