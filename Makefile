# The two commands a new user needs:
#   make demo   creates .venv, installs, and runs the whole pipeline on the embedded default data
#   make test   creates .venv, installs with the test extras, and runs the test suite
PYTHON ?= python3
VENV ?= .venv
OUT ?= runs/quickstart
PYTEST_ARGS ?= -m "not slow"
PY := $(VENV)/bin/python
export VENV PYTHON

.PHONY: demo test test-all clean

$(VENV)/.installed: pyproject.toml scripts/setup_env.sh
	scripts/setup_env.sh
	touch $@

$(VENV)/.installed-test: pyproject.toml scripts/setup_env.sh
	scripts/setup_env.sh '[test]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(VENV)/bin/ernie-tiny quickstart --out $(OUT)

test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: $(VENV)/.installed-test
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
