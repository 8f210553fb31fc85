#!/usr/bin/env bash
# The GPU check in one command, on a machine with an NVIDIA GPU and this checkout:
#
#     bash tools/gpu_check.sh --out gpu-report
#
# A thin wrapper: finds a Python 3.10 or newer ($PYTHON, else python3) and runs
# tools/gpu_check.py with the same arguments, which sets up a venv, records the GPU, runs
# the gpu tests and the device benchmark, and writes gpu-report/gpu-report.json (see its
# docstring, or --help). Exit status: gpu_check.py's (0 only when everything passed).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "gpu_check.sh: error: $python is not a Python 3.10 or newer; set PYTHON=/path/to/python3" >&2
    exit 2
fi
exec "$python" "$here/gpu_check.py" "$@"
