# The two commands a new user needs:
#   make demo   creates .venv, installs, and runs the whole pipeline on the embedded default data
#   make test   creates .venv, installs with the test extras, and runs the test suite
PYTHON ?= python3
VENV ?= .venv
OUT ?= runs/quickstart
PYTEST_ARGS ?= -m "not slow"
# pytest-xdist workers (the test extras install it); every test holds in any order and on any worker, so
# `make test PYTEST_WORKERS=auto` runs one per core. Serial by default: on the shared 2-core machine (load 4.9)
# test_cli.py + test_deploy_inputs.py took 68 s with -n 2 against 44 s serial (each worker imports torch and
# builds the module fixtures again).
PYTEST_WORKERS ?= 0
PY := $(VENV)/bin/python
export VENV PYTHON

.PHONY: demo test test-all clean

$(VENV)/.installed: pyproject.toml setup.py ernie_tiny/tokenization/_speedups.c scripts/setup_env.sh
	scripts/setup_env.sh
	touch $@

$(VENV)/.installed-test: pyproject.toml setup.py ernie_tiny/tokenization/_speedups.c scripts/setup_env.sh
	scripts/setup_env.sh '[test]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(VENV)/bin/ernie-tiny quickstart --out $(OUT)

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-all: $(VENV)/.installed-test
	$(PY) -m pytest -q -n $(PYTEST_WORKERS)

clean:
	rm -rf $(VENV) .pytest_cache
