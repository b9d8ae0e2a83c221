# Two entry points: `make replicate` (set up, then the quick CPU replication) and `make test`.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: replicate test figures bench

replicate: $(STAMP)
	$(VENV)/bin/icl-lab replicate

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

figures: $(STAMP)
	$(VENV)/bin/icl-lab figures

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_train.py
	$(VENV)/bin/python benchmarks/bench_learners.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)
