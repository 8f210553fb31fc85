"""Bug: the decoder reads the CRC right after the last segment and ignores
any bytes after it."""

from vgc_ref import encoding
from vgc_ref.errors import FormatError
from wrong_impls._base import (
    dense_grad_var,
    encode_message,
    make_aggregate,
    strom_step,
    vgc_step,
)


def decode_message(data):
    buf = bytes(data)
    try:
        return encoding.decode_message(buf)
    except FormatError as err:
        if err.field != "crc32" or not err.reason.startswith("trailing"):
            raise
        return encoding.decode_message(buf[: err.offset + 4])


decode_accumulate = make_aggregate(decode_message)

__all__ = [
    "decode_accumulate",
    "decode_message",
    "dense_grad_var",
    "encode_message",
    "strom_step",
    "vgc_step",
]
