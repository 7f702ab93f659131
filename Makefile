# The README's two commands: `make demo` and `make test`. Both create or reuse .venv in the repo root.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= demo_out
# pytest options, e.g. make test PYTEST_ARGS="-k geometry"
PYTEST_ARGS ?=

.PHONY: setup demo test clean-venv

$(STAMP): setup.py setup.cfg
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/depth-sfm demo --out $(DEMO_OUT)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
