"""Compile every CUDA kernel without a GPU and check its instructions.

Usage (the CUDA simulator must be off; the CUDA toolkit's libNVVM, ``ptxas`` and, for
SASS, ``nvdisasm`` are needed; no GPU)::

    NUMBA_ENABLE_CUDASIM=0 python -m vgc_ref.backends.cuda_check --cc 80 --out DIR
    NUMBA_ENABLE_CUDASIM=0 python -m vgc_ref.backends.cuda_check --cc 90 --target builtin

``--target builtin`` uses Numba's built-in ``numba.cuda`` even where NVIDIA's
``numba-cuda`` is installed (which otherwise takes over the name); ``--target
numba-cuda`` requires it; ``--target default`` (the default) takes what
``import numba.cuda`` gives. The tool writes ``<kernel>.ptx``, ``<kernel>.cubin`` and
``<kernel>.sass`` per kernel and ``report.json``, prints the findings, and exits 1 if
any rule is broken:

* PTX: no float64 (``.f64``), no flush to zero (``.ftz``), no float add, subtract,
  multiply or divide without a rounding modifier (``add.f32`` is contractable: ptxas may
  fuse it with a multiply; ``add.rn.f32`` is not), no ``fma``/``mad`` at all, no
  approximate division or reciprocal;
* SASS (when ``nvdisasm`` is found): no float64 instruction, no ``.FTZ`` (except the
  float-to-integer step of ptxas's integer division), and ``FFMA`` only in the kernels
  that divide (:data:`cuda_kernels.DIVIDES`), and there no more than a kernel holding
  one ``div.rn.f32`` alone has; the division's slow-path subroutine is exempt (see
  :func:`sass_findings`).

tests/test_cuda_compile.py runs it for sm_80 and sm_90 on both CUDA targets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PTX_RULES = {
    "float64": re.compile(r"\.f64\b"),
    "flush to zero": re.compile(r"\.ftz\b"),
    "contractable float op": re.compile(r"\b(add|sub|mul|div)\.f32\b"),
    "fma": re.compile(r"\b(fma|mad)\.[a-z0-9.]*f32\b"),
    "approximate division": re.compile(r"\b(div\.(approx|full)|rcp\.approx)\b"),
}
SASS_RULES = {
    "float64": re.compile(r"\b(DADD|DMUL|DFMA|DSETP|DMNMX|DMMA)\b|\bF2F\.F64|\.F64\b"),
    # F2I.FTZ.U32.TRUNC is part of ptxas's 32-bit unsigned integer division (I2F.U32.RP,
    # MUFU.RCP, F2I), which computes the grid-stride loops' trip counts: no data passes.
    "flush to zero": re.compile(r"^(?!.*\bF2I\.FTZ\.U32\.TRUNC\b).*\.FTZ\b"),
}
SASS_FFMA = re.compile(r"\bFFMA(32I)?\b")
#: A kernel holding one correctly rounded division and nothing else: its FFMA count is
#: what ptxas's division sequence needs.
DIVISION_PROBE = "division_probe"


def toolkit_tool(name: str) -> str | None:
    """Path of a CUDA toolkit program: $CUDA_HOME/bin, /usr/local/cuda/bin, PATH, or a wheel."""
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / name).is_file():
            return str(Path(root) / "bin" / name)
    found = shutil.which(name)
    if found:
        return found
    try:  # NVIDIA's wheels (nvidia-cuda-nvdisasm etc.) put it under nvidia/cu13/bin
        import nvidia

        for base in nvidia.__path__:
            for candidate in sorted(Path(base).glob(f"cu*/bin/{name}")):
                return str(candidate)
    except ImportError:
        pass
    return None


def ptx_findings(name: str, ptx: str, divides: bool) -> list[str]:
    """The PTX rules a kernel breaks (one line each, with the first offending line)."""
    found = []
    for rule, pattern in PTX_RULES.items():
        for line in ptx.splitlines():
            if pattern.search(line):
                found.append(f"{name}: PTX {rule}: {line.strip()}")
                break
    if not divides and re.search(r"\bdiv\.rn\.f32\b", ptx):
        found.append(f"{name}: PTX divides but is not listed in DIVIDES")
    return found


def sass_functions(sass: str) -> dict[str, str]:
    """nvdisasm output split into its functions (the kernel and the subroutines it calls)."""
    names = set(re.findall(r"^\s*\.type\s+(\S+),@function", sass, re.M))
    parts: dict[str, list[str]] = {}
    current = None
    for line in sass.splitlines():
        label = line.strip()[:-1] if line.strip().endswith(":") else None
        if label in names:
            current = label
        if current is not None:
            parts.setdefault(current, []).append(line)
    return {name: "\n".join(lines) for name, lines in parts.items()}


def _slow_division(function_name: str) -> bool:
    """ptxas's slow path of a correctly rounded float32 division (div.rn.f32)."""
    return re.search(r"div_rn_noftz_f32_slowpath$", function_name) is not None


def sass_ffma(sass: str) -> int:
    """FFMA instructions outside the division's slow path."""
    return sum(
        len(SASS_FFMA.findall(body))
        for name, body in sass_functions(sass).items()
        if not _slow_division(name)
    )


def sass_findings(name: str, sass: str, divides: bool, probe_ffma: int) -> list[str]:
    """The SASS rules a kernel breaks.

    The slow path of a correctly rounded division (a subroutine ptxas adds for
    div.rn.f32; "noftz": it keeps subnormals) scales operands with FFMA and compares
    with FSETP.FTZ; it is exempt. The kernel itself may hold as many FFMA as a kernel
    that holds nothing but one division (``probe_ffma``), and only if it divides.
    """
    found = []
    for function, body in sass_functions(sass).items():
        if _slow_division(function):
            continue
        for rule, pattern in SASS_RULES.items():
            for line in body.splitlines():
                if pattern.search(line):
                    found.append(f"{name}: SASS {rule}: {line.strip()}")
                    break
    ffma = sass_ffma(sass)
    allowed = probe_ffma if divides else 0
    if ffma > allowed:
        found.append(f"{name}: SASS has {ffma} FFMA, allowed {allowed} (one division's sequence)")
    return found


def _use_builtin_target() -> None:
    """Drop numba-cuda's import redirector so that ``numba.cuda`` is Numba's own."""
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "NumbaCudaFinder"]


def _probe_kernel():
    from numba import cuda

    from vgc_ref.backends.cuda_kernels import _fdiv

    def division_probe(a, b, out):
        i = cuda.grid(1)
        if i < a.shape[0]:
            out[i] = _fdiv(a[i], b)

    return division_probe


def _controls():
    """Kernels that break one rule each: the checks must flag them (name -> (kernel, fastmath))."""
    import numpy as np
    from numba import cuda

    def contractable(a, b, out):  # a * b + c with plain operators: ptxas fuses it
        i = cuda.grid(1)
        if i < a.shape[0]:
            out[i] = a[i] * b[i] + out[i]

    def float64(a, b, out):
        i = cuda.grid(1)
        if i < a.shape[0]:
            out[i] = np.float32(np.float64(a[i]) * 0.1 + np.float64(b[i]))

    def flush_to_zero(a, b, out):  # fastmath turns on .ftz (and approximate division)
        i = cuda.grid(1)
        if i < a.shape[0]:
            out[i] = a[i] / b[i]

    return {"contractable": (contractable, False), "float64": (float64, False), "ftz": (flush_to_zero, True)}


def main(argv: list[str] | None = None) -> int:
    from vgc_ref._cli import ArgumentParser

    parser = ArgumentParser(prog="python -m vgc_ref.backends.cuda_check", description=__doc__.splitlines()[0])
    parser.add_argument("--cc", required=True, help="compute capability, e.g. 80 or 90")
    parser.add_argument(
        "--target",
        choices=["default", "builtin", "numba-cuda"],
        default="default",
        help="which numba.cuda compiles (default: %(default)s, what `import numba.cuda` gives)",
    )
    parser.add_argument("--out", type=Path, default=None, help="folder for PTX, cubin, SASS and report.json")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[1-9][0-9]", args.cc):
        parser.error(f"--cc {args.cc!r}: give a compute capability as two digits, e.g. 80 or 90")
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        parser.error("unset NUMBA_ENABLE_CUDASIM (or set it to 0): the simulator compiles nothing")
    cc = (int(args.cc[:-1]), int(args.cc[-1]))
    if args.target == "builtin":
        _use_builtin_target()
    from numba import cuda, types

    implementation = getattr(cuda, "implementation", "?")
    if args.target == "numba-cuda" and implementation == "Built-in":
        print("numba-cuda is not installed: numba.cuda is Numba's built-in target", file=sys.stderr)
        return 2
    from vgc_ref.backends import cuda_kernels

    kernels = cuda_kernels.compile_ptx(cc)
    from unittest import mock

    from numba.cuda import dispatcher

    class _Target:
        compute_capability = cc

    with mock.patch.object(dispatcher, "get_current_device", _Target, create=True):
        probe, _ = cuda.compile_ptx(
            _probe_kernel(), (types.float32[::1], types.float32, types.float32[::1]), cc=cc
        )
        controls = {
            name: cuda.compile_ptx(fn, (types.float32[::1],) * 3, cc=cc, fastmath=fastmath)[0]
            for name, (fn, fastmath) in _controls().items()
        }
    out = args.out or Path(f"cuda-check-sm{args.cc}")
    out.mkdir(parents=True, exist_ok=True)
    ptxas = toolkit_tool("ptxas")
    nvdisasm = toolkit_tool("nvdisasm")
    report = {"cc": args.cc, "implementation": implementation, "kernels": {}, "findings": []}
    sass_text = {}
    for name, ptx in {**kernels, DIVISION_PROBE: probe}.items():
        (out / f"{name}.ptx").write_text(ptx)
        entry = {"ptx_lines": ptx.count("\n")}
        if ptxas:
            cubin = out / f"{name}.cubin"
            subprocess.run(
                [ptxas, f"-arch=sm_{args.cc}", "-o", str(cubin), str(out / f"{name}.ptx")], check=True
            )
            entry["cubin_bytes"] = cubin.stat().st_size
            if nvdisasm:
                sass = subprocess.run(
                    [nvdisasm, "-c", str(cubin)], check=True, capture_output=True, text=True
                )
                (out / f"{name}.sass").write_text(sass.stdout)
                sass_text[name] = sass.stdout
                entry["ffma"] = sass_ffma(sass.stdout)
        report["kernels"][name] = entry
        if name != DIVISION_PROBE:
            report["findings"] += ptx_findings(name, ptx, name in cuda_kernels.DIVIDES)
    probe_ffma = report["kernels"][DIVISION_PROBE].get("ffma", 0)
    # The controls: what the rules say about kernels built to break them.
    report["controls"] = {}
    for name, ptx in controls.items():
        (out / f"control_{name}.ptx").write_text(ptx)
        found = ptx_findings(name, ptx, False)
        if ptxas and nvdisasm:
            cubin = out / f"control_{name}.cubin"
            subprocess.run(
                [ptxas, f"-arch=sm_{args.cc}", "-o", str(cubin), str(out / f"control_{name}.ptx")], check=True
            )
            sass = subprocess.run([nvdisasm, "-c", str(cubin)], check=True, capture_output=True, text=True)
            found += sass_findings(name, sass.stdout, False, probe_ffma)
        report["controls"][name] = found
    for name, sass in sass_text.items():
        if name != DIVISION_PROBE:
            report["findings"] += sass_findings(name, sass, name in cuda_kernels.DIVIDES, probe_ffma)
    report["ptxas"] = ptxas
    report["nvdisasm"] = nvdisasm
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"{implementation} numba.cuda, sm_{args.cc}: {len(kernels)} kernels compiled to PTX", end="")
    print(", SASS" if sass_text else (", cubin (no nvdisasm: no SASS)" if ptxas else " (no ptxas)"))
    for line in report["findings"]:
        print(line)
    return 1 if report["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
