"""The adapter protocol: which operations an implementation under test exposes, and how
the suite finds them.

An implementation is a Python module. It either defines the six operations itself, with
the reference's names and signatures::

    vgc_step(state, g, s, params) -> Packet              docs/algorithm.md section 3
    strom_step(state, g, params) -> Packet               section 4
    encode_message(packets) -> bytes                     docs/format.md
    decode_message(data) -> list[Packet]                 docs/format.md
    decode_accumulate(messages, sizes, out=None) -> list[ndarray]   section 7
    dense_grad_var(x, delta) -> (g_W, s_W, g_b, s_b)     section 2
    conv_grad_var(patches, delta, form) -> (g_W, s_W, g_b, s_b)   section 2.1

or it defines ``BACKEND``, a :class:`vgc_ref.backends.Backend`; then the step,
aggregation and both variance operations come from the backend's own kernels (never the
reference's), and encode_message / decode_message from the module when it defines them,
else from the reference (a backend that does not touch the wire format shares the
reference's codec; :attr:`Impl.borrowed` lists them and the report says so).

The exchange types are vgc_ref's own: :class:`vgc_ref.SegmentState` (updated in place),
:class:`vgc_ref.VGCParams`, :class:`vgc_ref.StromParams`, :class:`vgc_ref.Packet`,
float32 numpy arrays, and the exception classes of :mod:`vgc_ref.errors`.

A missing operation does not stop the run: it is bound to a stub that fails every
property using it with "X is not defined in some.module", the way the array API test
suite reports a missing function.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: The operations of the protocol, in the order docs/conformance.md lists them.
OPERATIONS = (
    "vgc_step",
    "strom_step",
    "encode_message",
    "decode_message",
    "decode_accumulate",
    "dense_grad_var",
    "conv_grad_var",
)
#: Operations a BACKEND object provides (the rest come from the module or the reference).
BACKEND_OPERATIONS = ("vgc_step", "strom_step", "decode_accumulate", "dense_grad_var", "conv_grad_var")

#: Environment variable naming the implementation under test (module, file or backend:NAME).
ENV_IMPL = "VGC_IMPL"
DEFAULT_IMPL = "vgc_ref"


class MissingOperationError(AssertionError):
    """An operation of the protocol is not defined by the implementation under test."""


def _missing(name: str, where: str) -> Callable:
    def stub(*args, **kwargs):
        raise MissingOperationError(f"{name} is not defined in {where}")

    stub.__name__ = name
    stub.missing = True  # type: ignore[attr-defined]
    return stub


@dataclass(frozen=True)
class Impl:
    """The implementation under test, bound to one short name (like ``xp`` in array-api-tests).

    Every field but ``name`` and ``missing`` is one operation of the protocol.
    """

    name: str
    vgc_step: Callable
    strom_step: Callable
    encode_message: Callable
    decode_message: Callable
    decode_accumulate: Callable
    dense_grad_var: Callable
    conv_grad_var: Callable
    missing: tuple[str, ...] = field(default=())
    #: Operations a BACKEND module took from the reference (its codec), not from itself.
    borrowed: tuple[str, ...] = field(default=())

    def __repr__(self) -> str:
        return f"Impl({self.name!r})"


def _import(spec: str):
    """Import a module by dotted name, or from a ``.py`` file path."""
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec).resolve()
        name = f"_vgc_impl_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load an implementation from {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def load_impl(spec: str | None = None) -> Impl:
    """Load the implementation named by ``spec`` (default: $VGC_IMPL, else "vgc_ref").

    ``spec`` is a dotted module name (``vgc_ref``, ``vgc_ref.backends.numba_cpu``,
    ``mypkg.vgc_adapter``), a path to a ``.py`` file, or ``backend:NAME`` for a backend
    registered in :mod:`vgc_ref.backends`. Raises ImportError when the module cannot be
    imported (a registered backend that cannot run here, for example).
    """
    if spec is None:
        spec = os.environ.get(ENV_IMPL) or DEFAULT_IMPL
    if spec.startswith("backend:"):
        from vgc_ref.backends import REGISTRY, backend_names

        backend = spec.split(":", 1)[1]
        if backend not in REGISTRY:
            raise ImportError(f"no backend {backend!r}; registered: {backend_names()}")
        spec = REGISTRY[backend]
    module = _import(spec)

    import vgc_ref

    ops: dict[str, Callable] = {}
    missing, borrowed = [], []
    backend_obj = getattr(module, "BACKEND", None)
    for op in OPERATIONS:
        fn = getattr(module, op, None)
        if backend_obj is not None and op in BACKEND_OPERATIONS:
            fn = getattr(backend_obj, op, None)
        elif backend_obj is not None and fn is None:
            fn = getattr(vgc_ref, op)  # the backend shares the reference's codec
            borrowed.append(op)
        if not callable(fn):
            missing.append(op)
            fn = _missing(op, spec)
        ops[op] = fn
    return Impl(name=spec, missing=tuple(missing), borrowed=tuple(borrowed), **ops)
