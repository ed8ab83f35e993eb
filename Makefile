# The two entry points: `make demo` and `make test`. Both create .venv from pinned requirements.
SHELL := /bin/bash
PYTHON ?= python3.12
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test venv dag clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo: venv
	snakemake --profile profiles/local

test: venv
	pytest -ra --durations=15

dag: venv
	snakemake --dag | sed -n '/^digraph/,$$ p' | dot -Tsvg > dag.svg
	snakemake --rulegraph | sed -n '/^digraph/,$$ p' | dot -Tsvg > docs/rulegraph.svg

clean:
	rm -rf results logs .snakemake
