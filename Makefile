# Every target is listed by `make help`. The Python environment lives in .venv.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ENV ?= dev
PYTEST_ARGS ?=

.PHONY: help venv lint format test test-unit test-server test-service bench lock up down status clean

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml requirements/dev.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.lock -e .
	touch $@

venv: $(VENV)/.installed ## Create .venv with the pinned dependencies and app_metrics (editable)

lint: venv ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-unit: venv ## Unit tests (in-process ASGI, no servers)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-server: venv ## Tests against real uvicorn processes on 127.0.0.1 (workers, disconnects)
	$(PY) -m pytest tests/server $(PYTEST_ARGS)

test-service: venv ## Tests of the sample service against real PostgreSQL and Redis
	$(PY) -m pytest tests/service $(PYTEST_ARGS)

test: lint ## Lint, then every test suite (what CI runs)
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: venv ## Overhead per request vs. peers, /metrics render time, series after scans
	$(PY) bench/overhead.py

lock: venv ## Rewrite requirements/dev.lock from the current .venv (names normalised, sorted)
	{ echo "# Exact versions CI installs (python -m pip install -r requirements/dev.lock -e .)."; \
	  echo "# Regenerate after changing pyproject.toml ranges: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^app-metrics' \
	    | awk -F'==' '{n = tolower($$1); gsub("_", "-", n); print n "==" $$2}' | LC_ALL=C sort; \
	} > requirements/dev.lock

up: ## Start the monitoring stack (ENV=dev|stage|prod) -- not built yet, see README
	@echo "make up: the stack (Compose and native runtime) is not built yet; it lands with issues 4 and 5." >&2


down: ## Stop the stack -- not built yet
	@echo "make down: nothing to stop; the stack is not built yet." >&2

status: ## Show the stack's components -- not built yet
	@echo "make status: the stack is not built yet." >&2

clean: ## Remove .venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
