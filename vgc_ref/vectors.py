"""Golden vectors: the reference's inputs and outputs as plain files, for implementations in
any language.

Usage::

    python -m vgc_ref.vectors export DIR                # inputs + expected outputs of every case
    python -m vgc_ref.vectors run DIR --impl MODULE     # a Python implementation writes DIR/*/out/
    python -m vgc_ref.vectors check DIR [--case NAME]   # compare DIR/*/out/ with DIR/*/expected/

Another implementation reads ``DIR/<case>/case.json`` and ``DIR/<case>/in/``, writes its
outputs into ``DIR/<case>/out/`` with the same names and formats as
``DIR/<case>/expected/``, and runs ``check``. Every binary file is raw little-endian
(``.f32``: float32, ``.u32``: uint32, ``.bin``: a message); JSON files hold the rest.
docs/conformance.md has the full layout, as a table.

``run`` and ``check`` read only inside DIR and ``run`` writes only ``DIR/<case>/out/``:
every case name of ``index.json`` is a plain name of a directory under DIR (no ``..``, no
path separator, no link leading out), and ``run`` checks every input of the selected cases
(present, a regular file inside its case, of the size and values ``case.json`` implies)
before it loads the implementation, so a broken file is refused (exit status 2), never
blamed on the implementation (exit status 1).

Arrays of a case marked ``"sparse": true`` (the largest-index case, n = 2^27) are stored
as two files, ``NAME.idx.u32`` (strictly increasing indices) and ``NAME.val.f32`` (their
values): every element not listed is +0.0, and every element whose bits are not +0.0 is
listed. Nothing holds 2^27 floats.

Kinds of case:

* ``steps`` -- one worker, several segments (VGC, hybrid, Strom or DENSE), state from
  +0.0, several steps: per step the packets, the message and r, v after the step;
* ``aggregate`` -- P messages and the segment sizes: g_hat per segment;
* ``decode`` -- messages, valid and malformed: the packets, or the error's field and
  byte offset;
* ``dense`` -- a dense layer's x and D: g_W, s_W, g_b, s_b of ``dense_grad_var``
  (docs/algorithm.md section 2, bit-exact);
* ``calls`` -- one case of the kit's deterministic layer (vgc_ref.conformance.table), its
  calls written as plain values: every operation, the refusals with their error objects,
  the state left unchanged. These are not written by hand: every table case whose calls a
  program in another language can replay becomes one (vgc_ref.conformance.record), and
  ``index.json`` lists the others under ``python_only`` with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np

import vgc_ref
from vgc_ref._cli import (
    ArgumentParser,
    output_dir_problem,
    plain_name_problem,
    regular_file_problem,
    usage_error,
)
from vgc_ref.conformance import cases as edge
from vgc_ref.conformance import variance_cases
from vgc_ref.conformance.record import packet_doc
from vgc_ref.packet import MAX_SEGMENT_LEN, Codec, Packet
from vgc_ref.params import StromParams, VGCParams
from vgc_ref.state import SegmentState

FORMAT = "vgc_ref golden vectors"
VERSION = 1
f32 = np.float32


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def _write_array(base: Path, x: np.ndarray, sparse: bool) -> None:
    """``base.f32`` / ``base.u32``, or ``base.idx.u32`` + ``base.val.f32`` when sparse."""
    base.parent.mkdir(parents=True, exist_ok=True)
    if x.dtype == np.uint32:
        Path(f"{base}.u32").write_bytes(x.astype("<u4").tobytes())
        return
    x = np.ascontiguousarray(x, np.float32)
    if not sparse:
        Path(f"{base}.f32").write_bytes(x.astype("<f4").tobytes())
        return
    index = np.flatnonzero(x.view(np.uint32) != 0)  # every element that is not +0.0
    Path(f"{base}.idx.u32").write_bytes(index.astype("<u4").tobytes())
    Path(f"{base}.val.f32").write_bytes(x[index].astype("<f4").tobytes())


def _read_array(base: Path, n: int, sparse: bool) -> np.ndarray:
    if not sparse:
        return np.fromfile(f"{base}.f32", dtype="<f4").astype(np.float32)
    index = np.fromfile(f"{base}.idx.u32", dtype="<u4").astype(np.int64)
    value = np.fromfile(f"{base}.val.f32", dtype="<f4").astype(np.float32)
    x = np.zeros(n, np.float32)
    x[index] = value
    return x


def _fresh(path: Path) -> None:
    """Remove what ``path`` names before ``export`` writes it: a link itself (never what it
    leads to, so nothing outside DIR is written or removed), a file, or a directory tree."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _write_json(path: Path, doc) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def _f32_doc(x: float) -> dict:
    x32 = f32(x)
    return {"value": float(x32), "bits": f"{int(x32.view(np.uint32)):#010x}"}


# --------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------


def _seg(segment_id, n, method, **params):
    return {"segment_id": segment_id, "n": n, "method": method, "params": params}


def _vgc_inputs(g, s):
    return {"g": np.array(g, f32), "s": np.array(s, f32)}


def _random_inputs(rng, segments, steps):
    out = []
    for t in range(steps):
        step = {}
        for sg in segments:
            n = sg["n"]
            mean = variance_cases.normal(rng, n) * 0.1
            g = (mean + variance_cases.normal(rng, n) * (0.5 + 0.1 * t)).astype(f32)
            s = (rng.random(n) * 0.05 + g.astype(np.float64) ** 2 * 0.2).astype(f32)
            step[sg["segment_id"]] = {"g": g, "s": s}
        out.append(step)
    return out


def _single(segment, inputs_per_step):
    """A one-segment case: inputs_per_step is a list of (g, s)."""
    return [segment], [{segment["segment_id"]: _vgc_inputs(g, s)} for g, s in inputs_per_step]


def step_cases() -> dict:
    """name -> (description, segments, inputs, sparse). inputs[t][segment_id] = {"g", "s"}."""
    rng = np.random.default_rng(20180219)
    cases = {}
    sq, below = edge.SQRT2, edge.BELOW_SQRT2
    z = [0.0]

    segs = [_seg(0, 0, "vgc"), _seg(1, 0, "strom", tau=1.0), _seg(2, 0, "dense")]
    cases["empty_segments"] = (
        "n = 0 for every codec: empty packets (VGC E = 0)",
        segs,
        [{j: {"g": np.zeros(0, f32), "s": np.zeros(0, f32)} for j in range(3)}] * 2,
        False,
    )
    cases["nothing_sent"] = (
        "no candidate: r*r <= alpha*v everywhere; v decays by zeta",
        *_single(_seg(0, 6, "vgc"), [([0.1, -0.2, 0.3, 0.0, 1e-3, -1e-3], [1.0] * 6)] * 3),
        False,
    )
    g = [(-1) ** i * 2.0 ** (i % 14) * (1 + i / 32) for i in range(16)]
    cases["everything_sent"] = (
        "s = 0 and magnitudes within 2^14: every element is sent, every step",
        *_single(_seg(0, 16, "vgc"), [(g, [0.0] * 16), (g[::-1], [0.0] * 16)]),
        False,
    )
    cases["k_15_and_16"] = (
        "k = 15 is sent, k = 16 is held; rounding moves 2^-16 * sqrt2 to k = 15",
        *_single(
            _seg(0, 7, "vgc"),
            [
                (
                    [1.0, 2.0**-15, -(2.0**-15), 2.0**-16, 2.0**-16 * sq, 2.0**-16 * below, 2.0**-14],
                    [0.0] * 7,
                ),
                ([1.0, 0, 0, 0, 0, 0, 0], [0.0] * 7),
            ],
        ),
        False,
    )
    cases["ties_at_threshold"] = (
        "r*r == alpha*v is held (strict >); |r| == tau is sent (>=) in the hybrid and in Strom",
        [_seg(0, 4, "vgc", alpha=2.0), _seg(1, 4, "vgc", tau=1.0), _seg(2, 4, "strom", tau=1.0)],
        [
            {
                0: _vgc_inputs([1.0, 3.0, -2.0, 2.0], [0.5, 4.5, 2.0, 0.5]),
                1: _vgc_inputs([1.0, edge.ONE_MINUS, -1.0, 4.0], [0.0] * 4),
                2: _vgc_inputs([1.0, -1.0, edge.ONE_MINUS, 2.5], [0.0] * 4),
            }
        ]
        * 2,
        False,
    )
    cases["subnormals"] = (
        "subnormal g and s: never sent, accumulated and decayed exactly",
        *_single(
            _seg(0, 5, "vgc", alpha=1e-30),
            [([edge.F32_SUB, -edge.F32_SUB, edge.F32_TINY, 2.0**-130, 1.0], [edge.F32_SUB] * 5)] * 2,
        ),
        False,
    )
    cases["near_float32_max"] = (
        "values near float32 max: e clamped to 254 (q = 2^127), r*r overflowing to inf",
        *_single(
            _seg(0, 5, "vgc"),
            [
                ([edge.F32_MAX, -3e38, 2.0**127, 1e19, 2.0**124], [0.0, 0.0, 0.0, edge.F32_MAX, 0.0]),
                (z * 5, z * 5),
            ],
        ),
        False,
    )
    cases["sqrt2_rounding"] = (
        "mantissa 0x3504F3 rounds up, 0x3504F2 down",
        *_single(_seg(0, 6, "vgc"), [([sq, below, -sq, 2 * sq, 2 * below, 1.5], [0.0] * 6)] * 2),
        False,
    )
    n = MAX_SEGMENT_LEN
    last = n - 1
    big = []
    for t in range(2):
        g = np.zeros(n, f32)
        s = np.zeros(n, f32)
        g[[0, 12345, last]] = [1.0 + t, -0.75, 3.0 - t]
        s[[12345, last]] = [0.1, 0.5 * t]
        big.append({0: {"g": g, "s": s}})
    cases["max_index"] = (
        "n = 2^27: the largest index, 2^27 - 1 (27 bits all ones); arrays stored sparsely",
        [_seg(0, n, "vgc")],
        big,
        True,
    )
    segs = [
        _seg(0, 40, "vgc"),
        _seg(1, 30, "vgc", alpha=1.0, zeta=0.9, tau=0.05, residual="reset"),
        _seg(2, 25, "strom", tau=0.5),
        _seg(3, 10, "dense"),
    ]
    cases["multi_segment_every_codec"] = (
        "four segments: VGC (feedback), hybrid (reset), Strom and DENSE, five steps",
        segs,
        _random_inputs(rng, segs, 5),
        False,
    )
    segs = [_seg(7, 200, "vgc", alpha=2.0, zeta=0.999)]
    cases["random_steps"] = (
        "one VGC segment with random gradients, eight steps",
        segs,
        _random_inputs(rng, segs, 8),
        False,
    )
    return cases


def _params(segment):
    p = segment["params"]
    if segment["method"] == "vgc":
        return VGCParams(**p)
    if segment["method"] == "strom":
        return StromParams(**p)
    return None


def _run_steps(impl, segments, inputs, sparse, copy_inputs=True):
    """Yield (packets, message, states) per step, running ``impl`` (an adapter) from zero state.

    ``inputs`` is iterated once unless ``sparse``, so ``run`` passes a generator that reads
    one step from disk at a time; those arrays are the step's own, so ``copy_inputs=False``
    hands them to ``impl`` without the protective copy (for n = 2^27, 512 MiB each).
    """
    if sparse:  # run on the elements that are ever nonzero; every other element stays +0.0
        support = sorted(
            {
                int(i)
                for step in inputs
                for a in step.values()
                for x in a.values()
                for i in np.flatnonzero(x.view(np.uint32))
            }
        )
        index = np.array(support, np.int64)
    states = {}
    for sg in segments:
        m = index.size if sparse else sg["n"]
        states[sg["segment_id"]] = SegmentState.zeros(m, sg["segment_id"])
    for step in inputs:
        packets = []
        for sg in segments:
            j = sg["segment_id"]
            g, s = step[j]["g"], step[j]["s"]
            if sparse:
                g, s = g[index], None if s is None else s[index]
            if copy_inputs:
                g, s = g.copy(), None if s is None else s.copy()
            if sg["method"] == "vgc":
                p = impl.vgc_step(states[j], g, s, _params(sg))
            elif sg["method"] == "strom":
                p = impl.strom_step(states[j], g, _params(sg))
            else:
                p = vgc_ref.dense_packet(j, g)
            if sparse:  # the packet of the full segment: map the compacted indices back
                shift = np.uint32(5 if p.codec == Codec.VGC_Q4 else 1)
                low = p.words & ((np.uint32(1) << shift) - np.uint32(1))
                words = (index[(p.words >> shift).astype(np.int64)].astype(np.uint32) << shift) | low
                p = Packet(j, sg["n"], p.codec, p.param, words)
            packets.append(p)
        states_out = {}
        for sg in segments:
            st = states[sg["segment_id"]]
            r, v = st.r, st.v
            if sparse:
                r, v = np.zeros(sg["n"], f32), np.zeros(sg["n"], f32)
                r[index], v[index] = st.r, st.v
            states_out[sg["segment_id"]] = (r, v)
        yield packets, impl.encode_message(packets), states_out


def _write_step_outputs(root: Path, segments, steps, sparse) -> None:
    for t, (packets, message, states) in enumerate(steps):
        d = root / f"step{t}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "message.bin").write_bytes(bytes(message))
        _write_json(d / "packets.json", [packet_doc(p) for p in packets])
        for sg, p in zip(segments, packets):
            j = sg["segment_id"]
            _write_array(d / f"seg{j}.words", np.asarray(p.words, np.uint32), sparse)
            if sg["method"] == "dense":
                continue
            r, v = states[j]
            _write_array(d / f"seg{j}.r", r, sparse)
            if sg["method"] == "vgc":
                _write_array(d / f"seg{j}.v", v, sparse)


def _decode_result(decode, data: bytes) -> dict:
    try:
        packets = decode(data)
    except vgc_ref.FormatError as err:
        return {"ok": False, "error": "FormatError", "field": err.field, "offset": err.offset}
    return {"ok": True, "packets": [{**packet_doc(p), "words": [int(w) for w in p.words]} for p in packets]}


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


def _directory(directory: str | Path) -> Path:
    """``directory`` as a Path; VectorsError for the empty string (Path("") is the working directory)."""
    if str(directory) == "":
        raise VectorsError("the directory is empty ''; give the directory of the vectors")
    return Path(directory)


def _writable_directory(root: Path) -> None:
    """Create ``root`` if needed, once a file is proven writable there; VectorsError if not."""
    problem = output_dir_problem(str(root))
    if problem:
        raise VectorsError(f"{root}: cannot write here ({problem})")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VectorsError(f"{root}: cannot create it ({err.strerror or err})") from err


def export(directory: str | Path) -> list[str]:
    """Write every case's inputs and the reference's expected outputs under ``directory``."""
    root = _directory(directory)
    _writable_directory(root)
    index = []
    for name, (description, segments, inputs, sparse) in step_cases().items():
        case = root / name
        _fresh(case)
        segs_doc = []
        for sg in segments:
            params = _params(sg)
            doc = {k: sg[k] for k in ("segment_id", "n", "method")}
            if isinstance(params, VGCParams):
                doc["params"] = {
                    "alpha": _f32_doc(params.alpha),
                    "zeta": _f32_doc(params.zeta),
                    "tau": _f32_doc(params.tau),
                    "residual": params.residual,
                }
            elif isinstance(params, StromParams):
                doc["params"] = {"tau": _f32_doc(params.tau)}
            segs_doc.append(doc)
        _write_json(
            case / "case.json",
            {
                "name": name,
                "kind": "steps",
                "description": description,
                "sparse": sparse,
                "steps": len(inputs),
                "segments": segs_doc,
            },
        )
        for t, step in enumerate(inputs):
            for sg in segments:
                j = sg["segment_id"]
                _write_array(case / "in" / f"step{t}" / f"seg{j}.g", step[j]["g"], sparse)
                if sg["method"] == "vgc":
                    _write_array(case / "in" / f"step{t}" / f"seg{j}.s", step[j]["s"], sparse)
        _write_step_outputs(
            case / "expected",
            segments,
            _run_steps(vgc_ref, segments, inputs, True if sparse else False),
            sparse,
        )
        index.append({"name": name, "kind": "steps", "description": description})

    for agg in edge.AGGREGATE_EDGE_CASES:
        name = f"aggregate_{agg.name}"
        case = root / name
        _fresh(case)
        messages = agg.messages()
        _write_json(
            case / "case.json",
            {
                "name": name,
                "kind": "aggregate",
                "description": agg.why,
                "ranks": len(messages),
                "sizes": agg.sizes,
            },
        )
        for w, m in enumerate(messages):
            (case / "in").mkdir(parents=True, exist_ok=True)
            (case / "in" / f"rank{w}.bin").write_bytes(m)
        for j, g_hat in enumerate(vgc_ref.decode_accumulate(messages, agg.sizes)):
            _write_array(case / "expected" / f"seg{j}.g_hat", g_hat, False)
        index.append({"name": name, "kind": "aggregate", "description": agg.why})

    name = "decode"
    case = root / name
    _fresh(case)
    messages = {"valid": edge.valid_message(), **edge.MALFORMED_MESSAGES}
    description = "one valid and one malformed message per class: the packets or the error's field and offset"
    _write_json(
        case / "case.json",
        {"name": name, "kind": "decode", "description": description, "messages": list(messages)},
    )
    for key, data in messages.items():
        (case / "in").mkdir(parents=True, exist_ok=True)
        (case / "in" / f"{key}.bin").write_bytes(data)
        _write_json(case / "expected" / f"{key}.json", _decode_result(vgc_ref.decode_message, data))
    index.append({"name": name, "kind": "decode", "description": description})

    index += _export_dense(root)
    calls, python_only = _export_calls(root)
    index += calls

    _fresh(root / "index.json")
    _write_json(
        root / "index.json",
        {
            "format": FORMAT,
            "version": VERSION,
            "vgc_ref": vgc_ref.__version__,
            "cases": index,
            "python_only": python_only,
        },
    )
    return [c["name"] for c in index]


# --------------------------------------------------------------------------------------
# Kind "calls": the deterministic layer's cases as values
# --------------------------------------------------------------------------------------


def table_values() -> tuple[dict, dict]:
    """({case id: (case, calls)}, {case id: why it is Python-only}) for every case of the
    kit's deterministic layer but the slow ones; ``calls`` as :func:`record.as_values`."""
    from vgc_ref.conformance import record, table

    exported, python_only = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflow to inf is a case, not noise
        for case in table.CASES:
            if case.slow:
                python_only[case.id] = "slow (n = 2^27): the steps case max_index holds its bits"
                continue
            values = record.as_values(record.record(case))
            if isinstance(values, str):
                python_only[case.id] = values
            else:
                exported[case.id] = (case, values)
    return exported, python_only


def _write_file(path: Path, x) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(x, np.ndarray):
        dtype = "<u4" if x.dtype == np.uint32 else "<f4"
        path.write_bytes(np.ascontiguousarray(x).astype(dtype).tobytes())
    else:
        path.write_bytes(bytes(x))


def _write_call_outputs(directory: Path, result: dict, files: dict) -> None:
    _write_json(directory / "result.json", result)
    for name, x in files.items():
        _write_file(directory / name, x)


def _export_calls(root: Path) -> tuple[list[dict], list[dict]]:
    """Kind ``calls``: one case per table case; in/call<i>/ the arguments, expected/call<i>/
    result.json (and the arrays or message it returned, and r, v after a step)."""
    exported, python_only = table_values()
    index = []
    for case_id, (case, calls) in exported.items():
        directory = root / case_id
        _fresh(directory)
        why = case.why or f"the deterministic layer's case {case_id}"
        doc = {"name": case_id, "kind": "calls", "description": why, "rules": list(case.rules)}
        _write_json(directory / "case.json", {**doc, "calls": [c[0] for c in calls]})
        for i, (_, in_files, result, out_files) in enumerate(calls):
            for name, x in in_files.items():
                _write_file(directory / "in" / f"call{i}" / name, x)
            _write_call_outputs(directory / "expected" / f"call{i}", result, out_files)
        index.append(doc)
    return index, [{"case": k, "why": v} for k, v in python_only.items()]


def _read_call_inputs(directory: Path) -> dict:
    files = {}
    for path in sorted(directory.iterdir()) if directory.is_dir() else []:
        if path.suffix == ".f32":
            files[path.name] = np.fromfile(path, dtype="<f4").astype(np.float32)
        elif path.suffix == ".u32":
            files[path.name] = np.fromfile(path, dtype="<u4").astype(np.uint32)
        else:
            files[path.name] = path.read_bytes()
    return files


def _run_calls(impl, case: Path, doc: dict, out: Path) -> None:
    from vgc_ref.conformance import record

    for i, call in enumerate(doc["calls"]):
        files = _read_call_inputs(case / "in" / f"call{i}")
        try:
            kwargs = record.from_values(call, files)
        except (KeyError, ValueError, TypeError) as err:
            where = case / "in" / f"call{i}"
            raise VectorsError(f"{where}: the inputs do not match case.json ({err!r})") from err
        result, out_files = record.run_kwargs(impl, call["op"], kwargs)
        _write_call_outputs(out / f"call{i}", result, out_files)


DENSE_OUTPUTS = ("g_W", "s_W", "g_b", "s_b")


def _dense_layers() -> dict:
    """name -> (description, x, delta): the kit's hand-picked layers and one random layer."""
    layers = {
        f"dense_{name}": (variance_cases.WHY[name], *make())
        for name, make in variance_cases.EDGE_LAYERS.items()
    }
    layers["dense_random"] = (
        "64 samples, 12 inputs, 10 outputs of many magnitudes",
        *variance_cases.random_layer(),
    )
    return layers


def _export_dense(root: Path) -> list[dict]:
    """Kind ``dense``: in/x.f32 (float32[B, in], row-major), in/delta.f32 (float32[B, out]);
    expected/g_W.f32, s_W.f32 (float32[in, out]), g_b.f32, s_b.f32 (float32[out])."""
    index = []
    for name, (description, x, delta) in _dense_layers().items():
        case = root / name
        _fresh(case)
        batch, n_in = x.shape
        doc = {"name": name, "kind": "dense", "description": description}
        _write_json(case / "case.json", {**doc, "batch": batch, "in": n_in, "out": delta.shape[1]})
        _write_array(case / "in" / "x", x, False)
        _write_array(case / "in" / "delta", delta, False)
        _write_dense_outputs(case / "expected", vgc_ref.dense_grad_var(x, delta))
        index.append({"name": name, "kind": "dense", "description": description})
    return index


def _write_dense_outputs(directory: Path, results) -> None:
    for out_name, a in zip(DENSE_OUTPUTS, results):
        _write_array(directory / out_name, np.asarray(a), False)


def _run_dense(impl, case: Path, doc: dict, out: Path) -> None:
    x = _read_array(case / "in" / "x", 0, False).reshape(doc["batch"], doc["in"])
    delta = _read_array(case / "in" / "delta", 0, False).reshape(doc["batch"], doc["out"])
    _write_dense_outputs(out, impl.dense_grad_var(x, delta))


class VectorsError(Exception):
    """A directory or file of golden vectors cannot be used; the message names it."""


def _load_json(path: Path, what: str):
    """Parse a JSON file of the vectors, or raise VectorsError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VectorsError(f"{path}: missing ({what})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VectorsError(f"{path}: not a readable JSON file ({what}: {err})") from err


def plain_name(name, what: str, where: Path) -> str:
    """``name`` when it is a plain name of one directory entry, else VectorsError.

    Refused: anything but a non-empty string, a name with a path separator or a NUL,
    ``.`` and ``..``: a case or message name never leads outside its directory.
    """
    problem = plain_name_problem(name)
    if problem == "not a name":
        raise VectorsError(f"{where}: {what} {name!r} is not a name")
    if problem:
        raise VectorsError(f"{where}: {what} {name!r} is not a plain name (no path separators, no ..)")
    return name


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, links followed, is ``root`` or lies under it (``root`` resolved)."""
    real = os.path.realpath(path)
    return real == str(root) or real.startswith(str(root) + os.sep)


def _case_dir(root: Path, name: str) -> Path:
    """``root / name``, a directory whose real path (links followed) is directly under ``root``."""
    path = root / name
    real = Path(os.path.realpath(root))
    if Path(os.path.realpath(path)).parent != real:
        raise VectorsError(f"{path}: case {name} leads outside {root} (to {os.path.realpath(path)})")
    if not path.is_dir():
        raise VectorsError(f"{path}: case {name}: no such directory; export the vectors again")
    return path


def _cases(root: Path, only: list[str] | None) -> list[str]:
    """The case names of ``root/index.json`` (only those in ``only``, when given).

    Every name is a plain name of a directory directly under ``root`` (no ``..``, no path
    separator, no link leading elsewhere), listed once.
    """
    if not root.is_dir():
        raise VectorsError(f"{root}: no such directory; write one with: python -m vgc_ref.vectors export DIR")
    index = root / "index.json"
    if not index.is_file() or not _inside(index, Path(os.path.realpath(root))):
        raise VectorsError(
            f"{root}: no index.json, not a directory of golden vectors; "
            "write one with: python -m vgc_ref.vectors export DIR"
        )
    doc = _load_json(index, "the index of the cases")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise VectorsError(f"{root / 'index.json'}: not {FORMAT} version {VERSION}")
    cases = doc.get("cases")
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "name" in c for c in cases):
        raise VectorsError(f"{root / 'index.json'}: malformed case list (cases must be objects with a name)")
    names = [plain_name(c["name"], "case name", index) for c in cases]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise VectorsError(f"{index}: case {repeated[0]!r} is listed more than once")
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise VectorsError(f"--case {', '.join(unknown)}: no such case in {root / 'index.json'}")
        names = [n for n in names if n in only]
    for name in names:
        _case_dir(root, name)
    return names


def _check_case_doc(doc, path: Path) -> None:
    """The fields of case.json that ``run`` reads, with their types; VectorsError if not."""

    def need(ok: bool, field: str) -> None:
        if not ok:
            raise VectorsError(f"{path}: field {field} is missing or malformed")

    def is_int(x) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x >= 0

    kinds = ("steps", "aggregate", "decode", "dense", "calls")
    need(isinstance(doc, dict) and doc.get("kind") in kinds, "kind")
    if doc["kind"] == "steps":
        need(isinstance(doc.get("sparse"), bool), "sparse")
        need(is_int(doc.get("steps")), "steps")
        segments = doc.get("segments")
        need(isinstance(segments, list), "segments")
        for sg in segments:
            need(isinstance(sg, dict) and is_int(sg.get("segment_id")) and is_int(sg.get("n")), "segments")
            need(sg.get("method") in ("vgc", "strom", "dense"), "segments[].method")
            params = sg.get("params", {})
            need(isinstance(params, dict), "segments[].params")
            for key, value in params.items():
                need(key == "residual" or (isinstance(value, dict) and "value" in value), f"params.{key}")
    elif doc["kind"] == "aggregate":
        need(is_int(doc.get("ranks")), "ranks")
        need(isinstance(doc.get("sizes"), list) and all(is_int(n) for n in doc["sizes"]), "sizes")
    elif doc["kind"] == "dense":
        for key in ("batch", "in", "out"):
            need(is_int(doc.get(key)), key)
    elif doc["kind"] == "calls":
        from vgc_ref.conformance.record import SIGNATURES

        calls = doc.get("calls")
        need(isinstance(calls, list) and len(calls) > 0, "calls")
        for call in calls:
            need(isinstance(call, dict) and call.get("op") in SIGNATURES, "calls[].op")
    else:
        messages = doc.get("messages")
        need(isinstance(messages, list) and all(isinstance(m, str) for m in messages), "messages")


def _input_file(case: Path, rel: str) -> Path:
    """``case / rel``: a regular file whose real path lies inside the case; VectorsError if not."""
    path = case / rel
    problem = regular_file_problem(path, os.path.realpath(case))
    if problem is not None:
        kind, detail = problem
        raise VectorsError(
            {
                "outside": f"{path}: leads outside the case (to {detail})",
                "missing": f"{path}: missing (an input of case {case.name})",
                "unreadable": f"{path}: cannot read it ({detail})",
                "not regular": f"{path}: not a regular file (an input of case {case.name})",
            }[kind]
        )
    return path


def _sized(path: Path, n: int, what: str) -> None:
    size = path.stat().st_size
    if size != 4 * n:
        raise VectorsError(f"{path}: {size} bytes, expected {4 * n} ({what})")


def _check_array(case: Path, base: str, n: int, sparse: bool, non_negative: bool) -> None:
    """A steps input: float32[n] (or its sparse pair), every value finite, s >= 0."""
    if sparse:
        idx = _input_file(case, f"{base}.idx.u32")
        val = _input_file(case, f"{base}.val.f32")
        m = idx.stat().st_size // 4
        _sized(idx, m, "uint32 indices")
        _sized(val, m, f"float32[{m}], one value per index in {idx.name}")
        index = np.fromfile(idx, dtype="<u4").astype(np.int64)
        if index.size and (np.any(np.diff(index) <= 0) or index[-1] >= n):
            raise VectorsError(f"{idx}: indices must be strictly increasing and below n = {n}")
        x = np.fromfile(val, dtype="<f4")
        name = val
    else:
        name = _input_file(case, f"{base}.f32")
        _sized(name, n, f"float32[{n}]")
        x = np.fromfile(name, dtype="<f4")
    bad = np.flatnonzero(~np.isfinite(x) | ((x < 0) if non_negative else False))
    if bad.size:
        i = int(bad[0])
        rule = "finite and >= 0" if non_negative else "finite"
        raise VectorsError(f"{name}: element {i} is {float(x[i])!r}; a steps case's inputs are {rule}")


def _check_case_inputs(case: Path, doc: dict) -> None:
    """Every input ``run`` will read for this case, checked before any case runs.

    Files are regular files inside the case (no link leading out, no device); sizes match
    case.json; a steps case's g and s are finite (s >= 0) and its parameters valid; a calls
    case's inputs rebuild its calls' arguments. VectorsError names the case and the file.
    """
    kind = doc["kind"]
    out = case / "out"
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise VectorsError(f"{out}: not a directory of the case (a link or a file); remove it")
    if kind == "steps":
        ids = [sg["segment_id"] for sg in doc["segments"]]
        if len(set(ids)) != len(ids):
            raise VectorsError(f"{case / 'case.json'}: a segment_id is listed more than once")
        for sg in doc["segments"]:
            if sg["n"] > MAX_SEGMENT_LEN:
                raise VectorsError(f"{case / 'case.json'}: segment {sg['segment_id']} n = {sg['n']} > 2^27")
            params = {k: (v if k == "residual" else v["value"]) for k, v in sg.get("params", {}).items()}
            for key, value in params.items():
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                if key != "residual" and not number:
                    raise VectorsError(
                        f"{case / 'case.json'}: segment {sg['segment_id']} params.{key} is {value!r}, "
                        "expected a number"
                    )
            try:
                _params({**sg, "params": params})
            except Exception as err:  # the hyperparameters' own refusal, naming the field
                raise VectorsError(f"{case / 'case.json'}: segment {sg['segment_id']} params: {err}") from err
        for t in range(doc["steps"]):
            for sg in doc["segments"]:
                j, n = sg["segment_id"], sg["n"]
                _check_array(case, f"in/step{t}/seg{j}.g", n, doc["sparse"], False)
                if sg["method"] == "vgc":
                    _check_array(case, f"in/step{t}/seg{j}.s", n, doc["sparse"], True)
    elif kind == "aggregate":
        for w in range(doc["ranks"]):
            _input_file(case, f"in/rank{w}.bin")
    elif kind == "dense":
        _sized(_input_file(case, "in/x.f32"), doc["batch"] * doc["in"], "float32[batch, in]")
        _sized(_input_file(case, "in/delta.f32"), doc["batch"] * doc["out"], "float32[batch, out]")
    elif kind == "calls":
        from vgc_ref.conformance import record

        for i, call in enumerate(doc["calls"]):
            where = case / "in" / f"call{i}"
            if where.exists() and not _inside(where, Path(os.path.realpath(case))):
                raise VectorsError(f"{where}: leads outside the case")
            for path in sorted(where.iterdir()) if where.is_dir() else []:
                _input_file(case, f"in/call{i}/{path.name}")
            try:
                record.from_values(call, _read_call_inputs(where))
            except Exception as err:  # a missing file, a wrong size or field: the vectors', not the impl's
                raise VectorsError(f"{where}: the inputs do not match case.json ({err!r})") from err
    else:
        for key in doc["messages"]:
            plain_name(key, "message name", case / "case.json")
            _input_file(case, f"in/{key}.bin")


def run_impl(directory: str | Path, impl_spec: str, only: list[str] | None = None) -> int:
    """Run a Python implementation (the conformance adapter) on the cases; write ``out/``.

    Returns 0, or 1 when the implementation raised on a case (its ``out/`` is then
    incomplete, which ``check`` reports). Raises :class:`VectorsError` for a directory,
    case file, case input or ``impl_spec`` that cannot be used, before any case runs and
    before anything is written: every input is checked first (:func:`_check_case_inputs`),
    and nothing outside ``DIR/<case>/out/`` is written or removed.
    """
    from vgc_ref.conformance.adapter import load_impl

    root = _directory(directory)
    names = _cases(root, only)
    docs = {}
    for name in names:
        case = root / name
        path = _input_file(case, "case.json")
        docs[name] = _load_json(path, f"case {name}")
        _check_case_doc(docs[name], path)
        _check_case_inputs(case, docs[name])
    problem = output_dir_problem(str(root))
    if problem:
        raise VectorsError(f"{root}: {problem}")
    try:
        impl = load_impl(impl_spec)
    except Exception as err:  # the module under test fails to import: its error, in one line
        raise VectorsError(f"--impl {impl_spec!r}: cannot load it ({type(err).__name__}: {err})") from err
    failed = 0
    for name, doc in docs.items():
        case = root / name
        out = case / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        try:
            with warnings.catch_warnings():  # overflow to inf is what some cases are about
                warnings.simplefilter("ignore", RuntimeWarning)
                _run_case(impl, doc, case, out)
        except OSError as err:  # an input file vanished since the check, or out/ cannot be written
            raise VectorsError(f"{case}: {err}") from err
        except VectorsError:
            raise
        except Exception as err:  # the implementation under test raised on a valid input
            failed += 1
            print(f"error {name}: the implementation raised {type(err).__name__}: {err}", flush=True)
            continue
        print(f"ran   {name}", flush=True)
    return 1 if failed else 0


def _step_inputs(case: Path, segments: list[dict], steps: int, sparse: bool):
    """Yield each step's {segment_id: {"g", "s"}}, read from disk one step at a time."""
    for t in range(steps):
        step = {}
        for sg in segments:
            j, n = sg["segment_id"], sg["n"]
            g = _read_array(case / "in" / f"step{t}" / f"seg{j}.g", n, sparse)
            s = None
            if sg["method"] == "vgc":
                s = _read_array(case / "in" / f"step{t}" / f"seg{j}.s", n, sparse)
            step[j] = {"g": g, "s": s}
        yield step


def _run_case(impl, doc: dict, case: Path, out: Path) -> None:
    """Run one case's operations with ``impl``; write its outputs under ``out``."""
    if doc["kind"] == "steps":
        sparse = doc["sparse"]
        segments = []
        for sg in doc["segments"]:
            params = {}
            for key, value in sg.get("params", {}).items():
                params[key] = value if key == "residual" else value["value"]
            segments.append({**sg, "params": params})
        inputs = _step_inputs(case, segments, doc["steps"], sparse)  # streamed: one step in memory
        steps = _run_steps(impl, segments, inputs, False, copy_inputs=False)
        _write_step_outputs(out, segments, steps, sparse)
    elif doc["kind"] == "aggregate":
        messages = [(case / "in" / f"rank{w}.bin").read_bytes() for w in range(doc["ranks"])]
        for j, g_hat in enumerate(impl.decode_accumulate(messages, doc["sizes"])):
            _write_array(out / f"seg{j}.g_hat", g_hat, False)
    elif doc["kind"] == "dense":
        _run_dense(impl, case, doc, out)
    elif doc["kind"] == "calls":
        _run_calls(impl, case, doc, out)
    else:
        for key in doc["messages"]:
            result = _decode_result(impl.decode_message, (case / "in" / f"{key}.bin").read_bytes())
            _write_json(out / f"{key}.json", result)


def _compare_file(expected: Path, got: Path) -> str | None:
    """None when equal, else a one-line description of the first difference."""
    if not got.exists():
        return f"{got.name}: missing"
    if not got.is_file():
        return f"{got.name}: not a regular file"
    if expected.suffix == ".json":
        want = _load_json(expected, "an expected output")
        try:
            have = json.loads(got.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return f"{got.name}: not valid JSON ({err})"
        return (
            None
            if want == have
            else f"{got.name}: {json.dumps(have)[:200]} != expected {json.dumps(want)[:200]}"
        )
    want, have = expected.read_bytes(), got.read_bytes()
    if want == have:
        return None
    if expected.suffix in (".f32", ".u32") and len(want) == len(have) and len(want) % 4 == 0:
        a = np.frombuffer(have, "<u4")
        b = np.frombuffer(want, "<u4")
        i = int(np.flatnonzero(a != b)[0])
        shown = (
            (lambda x: f"{x:#010x} ({np.uint32(x).view(np.float32)!r})") if expected.suffix == ".f32" else hex
        )
        return f"{got.name}: element {i} is {shown(int(a[i]))}, expected {shown(int(b[i]))}"
    i = next((k for k, (x, y) in enumerate(zip(have, want)) if x != y), min(len(have), len(want)))
    return f"{got.name}: {len(have)} bytes, expected {len(want)}; first difference at byte {i}"


def check(directory: str | Path, only: list[str] | None = None) -> int:
    """Compare every ``out/`` file with its ``expected/`` twin; print one line per case.

    Returns 0 when every case matches, 1 otherwise.
    """
    root = _directory(directory)
    failed = 0
    names = _cases(root, only)
    for name in names:  # every case's expected/ before the first line of output
        expected = root / name / "expected"
        if not expected.is_dir() or not _inside(expected, Path(os.path.realpath(root / name))):
            raise VectorsError(f"{expected}: missing; export the vectors again")
    for name in names:
        expected = root / name / "expected"
        out = root / name / "out"
        problems = []
        if not out.is_dir():
            problems.append("out/ is missing")
        else:
            for path in sorted(p for p in expected.rglob("*") if p.is_file()):
                rel = path.relative_to(expected)
                problem = _compare_file(path, out / rel)
                if problem:
                    problems.append(f"{rel.parent / problem}" if rel.parent != Path(".") else problem)
            want = {p.relative_to(expected) for p in expected.rglob("*") if p.is_file()}
            extra = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
            problems += [
                f"{name}: not expected (out/ must hold exactly the files of expected/)"
                for name in extra
                if Path(name) not in want
            ]
        if problems:
            failed += 1
            print(
                f"FAIL  {name}: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            )
        else:
            print(f"ok    {name}")
    print(f"{failed} case(s) failed" if failed else "all cases match")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m vgc_ref.vectors", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write the cases and the reference's expected outputs")
    p.add_argument("dir")
    p = sub.add_parser("run", help="run a Python implementation on the cases, writing out/")
    p.add_argument("dir")
    p.add_argument(
        "--impl", default="vgc_ref", help="module, .py file or backend:NAME (the conformance adapter)"
    )
    p.add_argument("--case", action="append", help="only this case (repeatable)")
    p = sub.add_parser("check", help="compare out/ with expected/ for every case")
    p.add_argument("dir")
    p.add_argument("--case", action="append", help="only this case (repeatable)")
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    if args.dir == "":
        usage_error(prog, "DIR is empty ''; give the directory of the vectors")
    try:
        if args.command == "export":
            names = export(args.dir)
            print(f"wrote {len(names)} cases to {args.dir}")
            return 0
        if args.command == "run":
            return run_impl(args.dir, args.impl, args.case)
        return check(args.dir, args.case)
    except VectorsError as err:  # exit status 2: the directory or a file of it cannot be used
        usage_error(prog, str(err))
    except OSError as err:
        usage_error(prog, f"{err.filename or args.dir}: {err.strerror or err}")


if __name__ == "__main__":
    sys.exit(main())
