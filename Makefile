# l1forge: the two commands a new user needs.
#   make run   creates .venv if missing, installs, and runs the whole flow on built-in generated data
#   make test  creates .venv if missing, installs, and runs the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PRESET ?= demo
OUT    ?= runs/$(PRESET)

.PHONY: run test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/l1forge run --task tagging --preset $(PRESET) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs
