# The two entry points: `make demo` and `make test`. Both create .venv from pinned requirements.
SHELL := /bin/bash
PYTHON ?= python3.12
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
SNAKEMAKE_FILES := Snakefile rules

.PHONY: demo status report test lint fmt venv dag clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	touch $@

demo: venv
	snakemake --profile profiles/local
	@pfscalib summary
	@echo "In a new shell: source .venv/bin/activate (puts pfscalib and snakemake on PATH), or: make status, make report"

# After `make demo` (no venv prerequisite: never a reinstall); this Makefile puts .venv/bin on PATH.
status:
	pfscalib status

report:
	snakemake --report report.html
	@echo "report.html: open it in a browser"

# The format and lint gate of the model workflows: ruff (Python) and snakefmt + snakemake --lint.
lint: venv
	ruff check .
	ruff format --check .
	snakefmt --check $(SNAKEMAKE_FILES)
	snakemake --lint

# For developers: apply the formatters.
fmt: venv
	ruff check --fix .
	ruff format .
	snakefmt $(SNAKEMAKE_FILES)

test: lint
	pytest -ra --durations=25 -n 3 --dist loadscope --no-loadscope-reorder

# Untracked pictures (.gitignore); docs/rulegraph.svg is a copy of rulegraph.svg made by hand.
dag: venv
	snakemake --dag | sed -n '/^digraph/,$$ p' | dot -Tsvg > dag.svg
	snakemake --rulegraph | sed -n '/^digraph/,$$ p' | dot -Tsvg > rulegraph.svg

clean:
	rm -rf results logs .snakemake
