"""Shared loader for the wrong implementations: a fresh, private copy of the correct port.

Each wrong module calls fresh(__name__), replaces exactly one helper in that copy, and
exports the seven adapter functions with export(). The correct module itself is never
patched, so the wrong modules are independent of each other.
"""

import importlib.util
import os
import sys

PORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_port.py")
API = (
    "vgc_step",
    "strom_step",
    "encode_message",
    "decode_message",
    "decode_accumulate",
    "dense_grad_var",
    "conv_grad_var",
)


def fresh(tag):
    name = "_redteam_correct_for_" + tag.replace(".", "_")
    spec = importlib.util.spec_from_file_location(name, os.path.normpath(PORT))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def export(mod, namespace):
    for f in API:
        namespace[f] = getattr(mod, f)
