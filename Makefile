PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One stamp per install profile. `make demo` installs the core and matplotlib only; `make test`
# installs every extra and the test tools ([all] includes [demo], so it also marks the demo's).
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test
DEMO_ARGS ?=

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing gfn-gym with the demo's dependencies (torch CPU, gymnasium, SB3, matplotlib) into $(VENV)"
	$(BIN)/pip install --disable-pip-version-check --progress-bar on -e ".[demo]"
	touch $(DEMO_STAMP)

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[all,dev]"
	touch $(TEST_STAMP) $(DEMO_STAMP)

.venv: $(TEST_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python examples/demo.py $(DEMO_ARGS)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV)
