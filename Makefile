# Two commands on a fresh machine (Python 3.11 + make): `make demo`, then `make test`.
# Both are idempotent: the venv and installs are stamped, finished demo runs are reused.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.memrec-installed
DEVSTAMP := $(VENV)/.memrec-dev-installed

.PHONY: demo test install dev clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "needs $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned to the CPU wheel (2.13.0); installing it first keeps pip from pulling a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	@touch $@

$(DEVSTAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

install: $(STAMP)
dev: $(DEVSTAMP)

demo: $(STAMP)
	$(BIN)/memrec demo --out runs/demo

test: $(DEVSTAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf runs/demo
