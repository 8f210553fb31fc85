"""The one registry of backends.

A backend is a :class:`Backend`: the same operations with the same signatures as the
NumPy reference, so that any of them can stand in for any other. Choose one by name
(``get_backend("numba-cpu")``) or with the environment variable ``VGC_BACKEND``.

Operations (all update state in place only when they do not raise):

* ``vgc_step(state, g, s, params) -> Packet`` -- docs/algorithm.md section 3
* ``vgc_step_scratch(state, g, s, params, out=None) -> Packet`` -- vgc_step for a state
  the caller throws away on error: the same results and errors, but r and v unspecified
  after one; with ``out``, state is only read and the new r and v go to out
* ``strom_step(state, g, params) -> Packet`` -- section 4
* ``check_step(state, g, s) -> None`` -- the validation of a step (s None for Strom),
  without changing anything; used to validate every segment before any is stepped
* ``encode_message(packets) -> bytes`` -- docs/format.md (the same bytes and errors as
  :func:`vgc_ref.encoding.encode_message`)
* ``decode_accumulate(messages, sizes, out=None) -> list[ndarray]`` -- section 7
* ``dense_grad_var(x, delta) -> (g_W, s_W, g_b, s_b)`` -- section 2
* ``conv_grad_var(patches, delta, form) -> (g_W, s_W, g_b, s_b)`` -- section 2.1

Backends are loaded lazily: importing vgc_ref compiles nothing.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from vgc_ref.errors import HyperparameterError

#: Environment variable that names the default backend.
ENV_VAR = "VGC_BACKEND"
DEFAULT = "numpy"


@dataclass(frozen=True)
class Backend:
    """One implementation of the operations; every field has the reference's signature."""

    name: str
    vgc_step: Callable
    vgc_step_scratch: Callable
    strom_step: Callable
    check_step: Callable
    encode_message: Callable
    decode_accumulate: Callable
    dense_grad_var: Callable
    conv_grad_var: Callable


#: name -> module that defines ``BACKEND``. Add a backend by adding one line here.
REGISTRY: dict[str, str] = {
    "numpy": "vgc_ref.backends.reference",
    "numba-cpu": "vgc_ref.backends.numba_cpu",
    "numba-cuda": "vgc_ref.backends.numba_cuda",
}

_loaded: dict[str, Backend] = {}


def backend_names() -> list[str]:
    """Names of every registered backend (available or not on this machine)."""
    return list(REGISTRY)


def get_backend(name: str | None = None) -> Backend:
    """The backend called ``name`` (default: $VGC_BACKEND, else "numpy").

    Raises HyperparameterError for an unknown name, and ImportError (with the reason)
    when a registered backend cannot run here.
    """
    if isinstance(name, Backend):
        return name
    field = "backend"
    if name is None:
        name = os.environ.get(ENV_VAR, DEFAULT)
        field = f"${ENV_VAR}"  # the error names where the bad value came from
    if name not in REGISTRY:
        raise HyperparameterError(field, name, f"must be one of {backend_names()}")
    if name not in _loaded:
        _loaded[name] = importlib.import_module(REGISTRY[name]).BACKEND
    return _loaded[name]
