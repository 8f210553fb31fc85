"""Loose arguments of the public API are refused with the argument's name, by every backend."""

from __future__ import annotations

import re

import numpy as np
import pytest

import vgc_ref
from vgc_ref.backends import get_backend
from vgc_ref.errors import InputError

CPU_BACKENDS = ["numpy", "numba-cpu"]


def _message(n: int = 1) -> bytes:
    return vgc_ref.encode_message([vgc_ref.dense_packet(0, np.ones(n, np.float32))])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    "sizes,name",
    [
        ([1.5], "sizes[0]"),
        (["1"], "sizes[0]"),
        ([True], "sizes[0]"),
        ([np.float64(1)], "sizes[0]"),
        (1, "sizes"),
    ],
    ids=["float", "str", "bool", "numpy-float", "int"],
)
def test_sizes_must_be_integers(backend, sizes, name):
    """Before, int(1.5) == 1 matched the message's n = 1 and the call succeeded."""
    out = [np.full(1, 7.0, np.float32)]
    with pytest.raises(InputError, match="^" + re.escape(name) + ": "):
        get_backend(backend).decode_accumulate([_message()], sizes, out=out)
    assert out[0][0] == 7.0  # out untouched


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_integer_sizes_of_any_integer_type_are_accepted(backend):
    for sizes in ([1], [np.int64(1)], (1,), np.array([1], np.uint32)):
        (g_hat,) = get_backend(backend).decode_accumulate([_message()], sizes)
        assert g_hat.tolist() == [1.0]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview], ids=["bytes", "bytearray", "memoryview"])
def test_one_message_instead_of_a_list_names_messages(backend, wrap):
    with pytest.raises(InputError, match=r"^messages: .*\[message\]"):
        get_backend(backend).decode_accumulate(wrap(_message()), [1])


def test_size_beyond_the_format_is_refused():
    with pytest.raises(InputError, match=r"sizes\[0\]"):
        vgc_ref.aggregate_packets([[vgc_ref.dense_packet(0, np.ones(1, np.float32))]], [2**27 + 1])


def test_a_bad_backend_from_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("VGC_BACKEND", "nump")
    with pytest.raises(vgc_ref.HyperparameterError, match=r"\$VGC_BACKEND='nump'"):
        get_backend()
    with pytest.raises(vgc_ref.HyperparameterError, match=r"hyperparameter backend='nump'"):
        get_backend("nump")
