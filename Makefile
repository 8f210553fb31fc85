# The commands the README shows. `make test` and `make demo` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
NP     ?= 4

.PHONY: demo test lint example clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[mpi,test]'
	touch $@

venv: $(VENV)/.installed

# The main job.
demo: $(VENV)/.installed
	$(PY) -m vgc_ref

# Lint, then every test (each MPI test has its own timeout; the whole run one more).
test: $(VENV)/.installed lint
	timeout 1500 $(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

example: $(VENV)/.installed
	$(PY) -m vgc_ref

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
