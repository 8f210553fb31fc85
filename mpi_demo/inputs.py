"""``--dump-inputs DIR``: every rank's g and s of the first steps, for compressor-only replay.

An implementation whose model arithmetic differs from the demo's (another framework,
another BLAS) can still be checked on real training gradients: the demo writes each
rank's g and s per segment for the first ``--dump-steps`` steps, together with the
reference's message of that rank and step, and ``python -m vgc_ref.conformance --replay
DIR`` feeds them through the implementation's steps, carrying each rank's state from step
to step as the demo does, and compares every message (docs/trace.md "Replaying the
compressor's inputs").

Layout of DIR (plain files, nothing but NumPy's .npy and JSON)::

    index.json                   what is below, and the hyperparameters
    t00000_r000_s00_g.npy        g of step 0, rank 0, segment 0: float32[n]
    t00000_r000_s00_s.npy        s of the same (vgc and hybrid only)
    t00000_r000.msg              the reference's message of step 0, rank 0 (raw bytes)

Rank 0 writes every file: the other ranks send it their arrays (a gather per dumped
step), so the directory needs to exist on rank 0's host only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "vgc-demo-inputs"
VERSION = 1
INDEX = "index.json"
#: The methods whose steps the conformance kit's adapter protocol covers.
METHODS = ("vgc", "strom", "hybrid")


def hyperparameters(method: str, alpha: float, zeta: float, tau: float, residual: str) -> dict[str, Any]:
    """The compressor's hyperparameters as the index records them (those the method uses)."""
    if method == "strom":
        return {"tau": float(tau)}
    return {"alpha": float(alpha), "zeta": float(zeta), "tau": float(tau), "residual": residual}


class InputDump:
    """Write the dump directory (rank 0 only); the index is rewritten after every step."""

    def __init__(
        self,
        directory: str | Path,
        method: str,
        params: dict[str, Any],
        layout: Sequence[tuple[str, tuple[int, ...]]],
        ranks: int,
        steps: int,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)  # checked before training
        self.index: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "method": method,
            "params": params,
            "ranks": ranks,
            "segments": [{"name": name, "n": int(np.prod(shape))} for name, shape in layout],
            "steps": steps,
            "records": [],
        }

    def write_step(
        self,
        step: int,
        entries: Sequence[tuple[int, Sequence[np.ndarray], Sequence[np.ndarray] | None, bytes]],
    ) -> None:
        """Save (rank, g per segment, s per segment or None, message) of every rank for ``step``."""
        for rank, grads, variances, message in sorted(entries, key=lambda e: e[0]):
            stem = f"t{step:05d}_r{rank:03d}"
            segments = []
            for j, g in enumerate(grads):
                rec = {"segment": j, "g": f"{stem}_s{j:02d}_g.npy", "s": None}
                np.save(self.dir / rec["g"], np.ascontiguousarray(g, dtype="<f4"))
                if variances is not None:
                    rec["s"] = f"{stem}_s{j:02d}_s.npy"
                    np.save(self.dir / rec["s"], np.ascontiguousarray(variances[j], dtype="<f4"))
                segments.append(rec)
            (self.dir / f"{stem}.msg").write_bytes(message)
            self.index["records"].append(
                {
                    "step": step,
                    "rank": rank,
                    "message": f"{stem}.msg",
                    "bytes": len(message),
                    "sha256": hashlib.sha256(message).hexdigest(),
                    "segments": segments,
                }
            )
        tmp = self.dir / (INDEX + ".tmp")
        tmp.write_text(json.dumps(self.index, indent=1) + "\n", encoding="ascii")
        os.replace(tmp, self.dir / INDEX)


#: The names of the files a dump writes besides the index: step, rank, then segment.
DUMP_FILE = re.compile(r"t\d{5}_r\d{3}(_s\d{2}_[gs]\.npy|\.msg)")


def is_dump_file(directory: str | Path, path: str | Path) -> bool:
    """Whether ``path`` is (or would be) one of the files a dump into ``directory`` writes.

    Another output given such a path would be overwritten by the dump, or overwrite it.
    The directory itself is checked by ``vgc_ref._cli.output_dir_problem`` (a probe file
    is created and removed there), before training starts.
    """
    name = os.path.basename(os.path.abspath(path))
    if os.path.realpath(os.path.dirname(os.path.abspath(path))) != os.path.realpath(directory):
        return False
    return name in (INDEX, INDEX + ".tmp") or DUMP_FILE.fullmatch(name) is not None
