# The commands the README shows. `make test` and `make demo` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NP     ?= 4
# TORCH: the torch that `make test` adds to the venv for the tests of vgc_ref.torch and of
# the PyTorch replica (examples/torch_replica); `make demo` does not need it. Empty skips it
# (those tests are then skipped with the reason). The pin names the CPU build (+cpu), so it
# never resolves to PyPI's Linux torch, which is the CUDA build (several GB): pip takes it
# from a local wheel cache or the configured index, else from PyTorch's CPU index
# (TORCH_INDEX); where neither has it, torch is left out with a message and its tests skip.
TORCH       ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test test-quick gpu-check gpu-check-rehearsal lint example dist dist-check clean mutation kit-slow

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[mpi,test,digits,plot,mnist1d]'
	touch $@

$(VENV)/.torch: $(VENV)/.installed
	$(if $(TORCH),$(PY) -m pip install -q $(TORCH) || $(PY) -m pip install -q $(TORCH) --index-url $(TORCH_INDEX) \
	  || echo "make: $(TORCH) not installed (not in the configured index nor $(TORCH_INDEX)); the torch tests will skip")
	touch $@

# A second venv with NVIDIA's numba-cuda, for the compile checks of the numba-cuda target
# (tests/test_cuda_compile.py): numba-cuda replaces numba.cuda in every interpreter it is
# installed in, so the main venv keeps the built-in target. Its NVVM must emit PTX that the
# toolkit's ptxas reads (CUDA 13.0 here: newer NVVM wheels write PTX 9.5, which it refuses).
# Empty CUDA_CHECK skips these checks.
CUDA_CHECK ?= numba-cuda[cu13]==0.30.4 nvidia-nvvm==13.0.88 nvidia-cuda-nvrtc==13.0.88
VENV_CUDA  ?= .venv-cuda
$(VENV_CUDA)/.installed: pyproject.toml
	$(if $(CUDA_CHECK),$(PYTHON) -m venv $(VENV_CUDA))
	$(if $(CUDA_CHECK),$(VENV_CUDA)/bin/python -m pip install -q $(CUDA_CHECK) numpy \
	  'nvidia-cuda-nvdisasm>=13.2; sys_platform == "linux" and platform_machine == "x86_64"')
	$(if $(CUDA_CHECK),touch $@)

venv: $(VENV)/.installed

# The main job: the MPI demo (docs/demo.md). MPIEXEC may name a cluster's own mpiexec;
# DEMO_ARGS adds options, e.g. make demo DEMO_ARGS="--dataset digits".
MPIEXEC ?= $(VENV)/bin/mpiexec
demo: $(VENV)/.installed
	NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MPIR_CVAR_ENABLE_HEAVY_YIELD=1 \
	$(MPIEXEC) -n $(NP) $(PY) -m mpi4py -m mpi_demo train --compare none $(DEMO_ARGS)

# Lint, then every test (each MPI test has its own timeout; the whole run one more, which
# interrupts pytest as Ctrl-C does, so it still prints what passed and failed).
test: $(VENV)/.torch $(VENV_CUDA)/.installed lint
	$(if $(CUDA_CHECK),VGC_CUDA_CHECK_PYTHON=$(CURDIR)/$(VENV_CUDA)/bin/python) timeout -s INT -k 60 2400 $(PY) -m pytest -q

# The quick tier: the whole suite but the tests marked slow or mpi and the C port (all run in `make test`),
# with nothing beyond `make demo`'s venv (torch and the CUDA compile checks skip). A few
# minutes on 2 cores; README.md gives the measured time.
test-quick: $(VENV)/.installed lint
	timeout -s INT -k 60 1200 $(PY) -m pytest -q -m "not slow and not mpi" --ignore=tests/test_c_port.py

# The GPU check (docs/performance.md, "numba-cuda: the GPU check"): on a machine with an
# NVIDIA GPU; it sets up .venv-gpu itself. GPU_OUT names the report's directory.
GPU_OUT ?= gpu-report
gpu-check:
	bash tools/gpu_check.sh --out $(GPU_OUT)

# Its rehearsal on the CUDA simulator (no GPU needed; about 20 s; tests/test_gpu_check.py runs it).
gpu-check-rehearsal: $(VENV)/.installed
	$(PY) tools/gpu_check.py --simulate --skip-setup --venv $(VENV) --out $(GPU_OUT)-rehearsal

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Mutation testing of the conformance kit: cosmic-ray mutates a copy of the semantic modules
# and runs the kit's deterministic layer (then its Hypothesis layer) against each mutant;
# writes docs/mutation.md. About half an hour on 2 cores (docs/conformance.md).
mutation: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[mutation]'
	$(PY) tools/mutation.py run --workers 2

# The kit's slow cases (n = 2^27 through a real step; about 8 GB of memory).
kit-slow: $(VENV)/.installed
	$(PY) -m vgc_ref.conformance.table --impl vgc_ref --slow -k slow.

example: $(VENV)/.installed
	$(PY) -m vgc_ref

# A wheel and an sdist in dist/ (docs/conformance.md, "Installing").
dist: $(VENV)/.installed
	rm -rf dist
	$(PY) -m build --outdir dist .

# Install each of them into a new virtual environment and run the kit there, outside the checkout.
DIST_CHECK ?= $(CURDIR)/build/dist-check
dist-check: dist
	rm -rf $(DIST_CHECK)
	for kind in whl tar.gz; do \
	  $(PYTHON) -m venv $(DIST_CHECK)/$$kind && \
	  $(DIST_CHECK)/$$kind/bin/python -m pip install -q "$$(ls $(CURDIR)/dist/*.$$kind)[test]" && \
	  (cd $(DIST_CHECK) && $(DIST_CHECK)/$$kind/bin/python -m vgc_ref.conformance --derandomize --max-examples 10) \
	  || exit 1; \
	done

clean:
	rm -rf $(VENV) $(VENV_CUDA) .pytest_cache .ruff_cache .hypothesis build dist
