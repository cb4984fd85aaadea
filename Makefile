# The two commands README.md promises: `make demo` (set up + index + search + answer) and `make test`.
.PHONY: setup demo test bench clean

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

test: setup
	bash scripts/ensure-chromium.sh
	$(VENV)/bin/python -m pytest

bench: setup
	$(VENV)/bin/python benchmarks/scifact.py
	$(VENV)/bin/python benchmarks/search_latency.py

clean:
	rm -rf .ragtune
