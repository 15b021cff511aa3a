# Two commands matter: `make demo` and `make test`. Both build the virtual environment
# from nothing (only Python 3.11+ and make are assumed) and reuse it while the lock is unchanged.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench bench-pvesim bench-planner bench-forecast bench-store bench-ingest clean sim

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "proxflow needs Python 3.11 or newer, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/proxflow demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy engine analytics pvesim tasks flows

unit: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test: lint typecheck unit

bench: bench-pvesim bench-planner bench-forecast bench-store bench-ingest

bench-pvesim: $(STAMP)
	$(BIN)/python bench/pvesim.py

bench-planner: $(STAMP)
	$(BIN)/python bench/planner.py

bench-forecast: $(STAMP)
	$(BIN)/python bench/forecast.py

bench-store: $(STAMP)
	$(BIN)/python bench/store.py

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

sim: $(STAMP)
	$(BIN)/proxflow sim --scenario demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
