# The two commands README.md promises: `make demo` (set up + index + search + answer) and `make test`.
.PHONY: setup demo test test-fast check bench clean

VENV := .venv
STAMP := $(VENV)/.installed

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh dev
	touch $(STAMP)

demo: setup
	$(VENV)/bin/ragtune ingest docs -c ragtune-docs --public
	$(VENV)/bin/ragtune search "what happens when ingestion is killed half-way?" -c ragtune-docs -k 3
	$(VENV)/bin/ragtune ask "What happens when ingestion is killed half-way?" -c ragtune-docs

# Static checks first (seconds): layer contracts, then types.
check: setup
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/mypy

# Everything: real models, servers, browser, training (CI runs this; ~20 min on 2 cores).
test: check
	bash scripts/ensure-system-packages.sh
	$(VENV)/bin/python -m pytest --durations=20

# While working: no real models (tiny random ones built in the tests), no servers, no training.
test-fast: setup
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/python -m pytest -m "not slow" --durations=10

bench: setup
	$(VENV)/bin/python benchmarks/scifact.py
	$(VENV)/bin/python benchmarks/search_latency.py

clean:
	rm -rf .ragtune
