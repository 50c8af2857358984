# ASMSpotter set-up and everyday commands.
#   make demo   the regional report chain on the offline demo region (la-pampa)
#   make test   the whole test suite (what CI runs)
# Both create .venv and install on first use: torch==2.13.0 first, so that pip never
# pulls a CUDA build, then the package with its development tools.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
REGION ?= la-pampa

.PHONY: demo test lint install clean-outputs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,l1c]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/asmspotter run $(REGION)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# notebooks/ (the briefings) is linted too once it exists
LINT_PATHS := asmspotter tests benchmarks $(wildcard notebooks)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

clean-outputs:
	rm -rf cache reports
