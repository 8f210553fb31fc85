"""Golden message files: the packets written out by hand, and the bytes they must encode to.

Usage (from the repository root)::

    python tests/golden/make_golden.py           # check the files on disk; exit 1 on any difference
    python tests/golden/make_golden.py --write   # regenerate them (on purpose only)

Each case NAME gives two files beside this script:

* ``NAME.json``: the packets, a list of ``{"segment_id", "n", "codec", "param", "words"}``
  with the codec's name ("DENSE", "VGC_Q4", "STROM") and the words as integers;
* ``NAME.bin``: the message, written here field by field with ``struct`` from the byte
  table of docs/format.md. This script does not import vgc_ref, so the files are an
  independent statement of the format; tests/test_encoding.py checks vgc_ref against
  them in both directions.

Every packet below is written from literals: VGC_Q4 words as (index, sign, k), STROM
words as (index, sign), DENSE words as float32 bit patterns. Nothing comes from a step
function.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

CODEC_BYTE = {"DENSE": 0, "VGC_Q4": 1, "STROM": 2}


def vgc(index: int, sign: int, k: int) -> int:
    """VGC_Q4 word: bits 31..5 index, bit 4 sign, bits 3..0 k."""
    return index << 5 | sign << 4 | k


def strom(index: int, sign: int) -> int:
    """STROM word: bits 31..1 index, bit 0 sign."""
    return index << 1 | sign


def packet(segment_id: int, n: int, codec: str, param: int, words: list[int]) -> dict:
    return {"segment_id": segment_id, "n": n, "codec": codec, "param": param, "words": words}


TAU_QUARTER = 0x3E800000  # float32 0.25
TAU_ONE = 0x3F800000  # float32 1.0
TAU_SMALL = 0x00000001  # float32 1e-45, the smallest subnormal: tau need only be finite and > 0

CASES: dict[str, list[dict]] = {
    # A message with no segments: header and CRC only, 16 bytes.
    "empty_message": [],
    # E = 130 (values 2^(3 - k)); k = 0 and k = 15, both signs, first and last index.
    "vgc_q4": [
        packet(
            3,
            1000,
            "VGC_Q4",
            130,
            [vgc(0, 0, 0), vgc(1, 1, 0), vgc(5, 0, 15), vgc(17, 1, 3), vgc(998, 0, 7), vgc(999, 1, 15)],
        )
    ],
    # An empty VGC packet: E = 0, count = 0 (the only packet with E = 0).
    "vgc_empty": [packet(0, 50, "VGC_Q4", 0, [])],
    # tau = 0.25; values -0.25, +0.25, -0.25.
    "strom": [packet(11, 16, "STROM", TAU_QUARTER, [strom(0, 1), strom(2, 0), strom(15, 1)])],
    # Every element's bits are kept: -0.0, subnormals, the largest float32.
    "dense": [
        packet(
            4,
            8,
            "DENSE",
            0,
            [
                0x3F800000,  # 1.0
                0x80000000,  # -0.0
                0x00000000,  # +0.0
                0x00000001,  # smallest subnormal, 1e-45
                0x807FFFFF,  # largest negative subnormal
                0x7F7FFFFF,  # largest float32, 3.4028235e38
                0xC0200000,  # -2.5
                0x00800000,  # smallest normal, 2^-126
            ],
        )
    ],
    # n = 0 for every codec: no words.
    "zero_length": [
        packet(0, 0, "VGC_Q4", 0, []),
        packet(1, 0, "STROM", TAU_ONE, []),
        packet(2, 0, "DENSE", 0, []),
    ],
    # n = 2^27 and the largest index 2^27 - 1 (word 0xFFFFFFF0); E = 254, the largest.
    "vgc_max_index": [
        packet(
            0,
            1 << 27,
            "VGC_Q4",
            254,
            [vgc(0, 0, 15), vgc((1 << 27) - 2, 0, 1), vgc((1 << 27) - 1, 1, 0)],
        )
    ],
    # Several segments, ids neither consecutive nor sorted (message order is list order).
    "multi_segment": [
        packet(7, 40, "VGC_Q4", 120, [vgc(2, 1, 0), vgc(3, 0, 4), vgc(39, 0, 15)]),
        packet(2, 3, "DENSE", 0, [0xBF800000, 0x00000000, 0x40490FDB]),  # -1.0, +0.0, pi
        packet(1000000, 7, "STROM", TAU_SMALL, [strom(6, 0)]),
        packet(0xFFFFFFFF, 12, "VGC_Q4", 0, []),
        packet(0, 5, "VGC_Q4", 1, [vgc(1, 0, 0), vgc(4, 1, 0)]),  # E = 1: values +-2^-126
    ],
}


def message_bytes(packets: list[dict]) -> bytes:
    """The message, field by field as in docs/format.md (all little-endian, unsigned)."""
    out = bytearray()
    out += b"VGCM"  # magic
    out += struct.pack("<H", 1)  # version
    out += struct.pack("<H", 0)  # reserved
    out += struct.pack("<I", len(packets))  # segment_count
    for p in packets:
        out += struct.pack("<I", p["segment_id"])
        out += struct.pack("<I", p["n"])
        out += struct.pack("<B", CODEC_BYTE[p["codec"]])
        out += bytes(3)  # reserved
        out += struct.pack("<I", p["param"])
        out += struct.pack("<I", len(p["words"]))  # count
        out += struct.pack(f"<{len(p['words'])}I", *p["words"])
    out += struct.pack("<I", zlib.crc32(out))  # crc32 of every byte before it
    return bytes(out)


def json_text(packets: list[dict]) -> str:
    """The packets as JSON, one packet per line."""
    if not packets:
        return "[]\n"
    return "[\n" + ",\n".join("  " + json.dumps(p) for p in packets) + "\n]\n"


def expected_files() -> dict[str, bytes]:
    """File name -> contents, for every case."""
    files = {}
    for name, packets in CASES.items():
        files[f"{name}.bin"] = message_bytes(packets)
        files[f"{name}.json"] = json_text(packets).encode()
    return files


def differences(directory: Path = HERE) -> list[str]:
    """What differs between the cases above and the files in ``directory`` (empty when all match)."""
    problems = []
    expected = expected_files()
    for name, contents in expected.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif path.read_bytes() != contents:
            problems.append(f"{name}: differs from the literals in make_golden.py")
    for path in sorted(directory.glob("*.bin")) + sorted(directory.glob("*.json")):
        if path.name not in expected:
            problems.append(f"{path.name}: not a case in make_golden.py")
    return problems


def _version() -> str:
    """vgc_ref's version, read from the installed package's metadata (this file imports nothing of it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vgc_ref")
    except PackageNotFoundError:
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s (vgc_ref {_version()})")
    parser.add_argument("--write", action="store_true", help="regenerate the golden files (on purpose only)")
    args = parser.parse_args(argv)
    if os.environ.get("VGC_PARSE_ONLY") == "1":  # the docs' commands test (tests/test_doc_commands.py)
        print(f"{parser.prog}: arguments parsed")
        return 0
    if args.write:
        for name, contents in expected_files().items():
            (HERE / name).write_bytes(contents)
            print(f"wrote {HERE / name}")
        return 0
    problems = differences()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(
            "golden files do not match; regenerate with --write only if the change is intended",
            file=sys.stderr,
        )
        return 1
    print(f"{len(CASES)} golden messages match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
