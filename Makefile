# Every target is listed by `make help`. The Python environment lives in .venv.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# the published wheel is app_metrics alone; the checkout's own packages (stack, assistant, tests)
# reach .venv through this .pth file, never through an install
CHECKOUT_PTH := monitoring-checkout.pth
ENV ?= dev
# one home: stack/__init__.py (the environments, each with compose/env/<env>.env)
ENVIRONMENTS := $(shell $(PYTHON) -c 'from stack import ENVIRONMENTS; print(*ENVIRONMENTS)')
PYTEST_ARGS ?=
RUNTIME ?= auto
# single or ha; empty: the environment's TOPOLOGY (compose/env/<env>.env)
TOPOLOGY ?=
ROTATE ?=
REF ?= HEAD
# make acceptance: where the JUnit report of the container's make test goes (CI checks it)
REPORT ?=
# make mutation: only the mutants of the rule files or alerts whose name contains it
ONLY ?=
# make evaluate-anomaly: the generator's seed
SEED ?= 18
# make backup: a new folder (default .run/backups/<env>/<UTC time>); make restore: a backup's
DIR ?=
STACK := $(PY) -m stack
# the machine's Debian packages, checked (as root: installed) with the machine's Python before
# .venv exists; as another user it prints the exact `sudo apt-get install` and stops
PACKAGES := $(PYTHON) -m stack.packages

# prerequisites run in the order written: packages, then .venv, then the work
.NOTPARALLEL:
.PHONY: help venv packages-up packages-test acceptance lint mutation format generate test test-unit test-server test-service test-stack test-integration bench \
	lock check-env secrets evaluate-anomaly up down status logs clean distclean engine engine-down images backup restore

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml requirements/dev.lock
	@$(PACKAGES) venv
	@echo "python environment: $(VENV) from requirements/dev.lock ($$($(PYTHON) --version))"
	@begun=$$SECONDS; \
	$(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install --quiet --upgrade pip; \
	$(PY) -m pip install --quiet -r requirements/dev.lock -e .; \
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))'); \
	echo "$(CURDIR)" > "$$site/$(CHECKOUT_PTH)"; \
	touch $@; \
	echo "python environment: ready in $$((SECONDS - begun)) s"

venv: $(VENV)/.installed ## Create .venv: the pinned dependencies, app_metrics (editable), the checkout on its path

packages-up: check-env
	@$(PACKAGES) up --runtime $(RUNTIME) --env $(ENV)

packages-test:
	@$(PACKAGES) test

lint: packages-test venv ## ruff, then every stack configuration (promtool, amtool, compose, yamllint, dashboards)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(STACK) lint

mutation: venv ## Break each alert one way at a time and count what the rule tests catch (ONLY=a file or alert)
	$(STACK) mutation $(if $(ONLY),--only $(ONLY))

evaluate-anomaly: packages-test venv ## Score the anomaly rules on a replayed month (SEED=18; CI set: the reduced form): precision, recall, false alerts, time to detect, beside static thresholds
	$(PY) -m stack.anomaly --seed $(SEED)

generate: venv ## Rewrite the generated files (per-env Prometheus/Alertmanager configs, rules with runbook links, dashboards, compose/versions.env and docs/stack.md versions, docs/metrics.md)
	$(STACK) generate

format: venv ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-unit: packages-test venv ## Unit tests (in-process ASGI, no servers)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-server: packages-test venv ## Tests against real uvicorn processes on 127.0.0.1 (workers, disconnects)
	$(PY) -m pytest tests/server $(PYTEST_ARGS)

test-service: packages-test venv ## Tests of the sample service against real PostgreSQL and Redis
	$(PY) -m pytest tests/service $(PYTEST_ARGS)

test-integration: packages-test venv ## The whole stack up, end to end (RUNTIME=native|compose; auto: Compose if Docker answers)
	STACK_TEST_RUNTIME=$(RUNTIME) $(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-stack: packages-test venv ## Tests of the stack's configuration and tooling (real promtool, amtool, Alertmanager)
	$(PY) -m pytest tests/stack $(PYTEST_ARGS)

test: packages-test lint ## Install what the checks need, lint, then every test suite (what CI runs)
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: venv ## app_metrics vs. peers (overhead, render, series); what exemplars add; its renderer vs. prometheus-client per line; scrapes of the metrics listener vs. in-app /metrics (saturated, blocked loop); Prometheus' scrape durations of the API job, saturated and blocked, on both runtimes; the stack (up, faults, /metrics, memory); VictoriaMetrics (ingest, bytes/sample, RAM/series)
	$(PY) bench/overhead.py
	$(PY) bench/exemplars.py
	$(PY) bench/render.py
	$(PY) bench/listener.py
	$(PY) bench/scrape.py
	$(PY) bench/stack.py
	$(PY) bench/victoriametrics.py

lock: venv ## Rewrite requirements/dev.lock from the current .venv (names normalised, sorted)
	{ echo "# Exact versions CI installs (python -m pip install -r requirements/dev.lock -e .)."; \
	  echo "# Regenerate after changing the ranges in pyproject.toml or requirements/dev.txt: make lock"; \
	  echo "# async-timeout: redis needs it on Debian's Python 3.11.2 (below 3.11.3); locked for every"; \
	  echo "# interpreter so that the lock and the environment match on both"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v '^app-metrics' \
	    | awk -F'==' '{n = tolower($$1); gsub("_", "-", n); print n "==" $$2}' | LC_ALL=C sort; \
	} > requirements/dev.lock

check-env:
	@case " $(ENVIRONMENTS) " in *" $(ENV) "*) ;; \
	  *) echo "unknown ENV '$(ENV)': use one of $(ENVIRONMENTS)" >&2; exit 2;; esac

engine: venv ## The local container engine for machines without Docker: Podman, its Docker API socket, Compose v2
	$(STACK) engine

images: venv ## Build the local images (debootstrap base, Debian packages) on the local engine
	$(STACK) images

acceptance: venv ## The README's quick start on a bare Debian 12 container (local engine): as another user, then as root; cold timings (REPORT=file: its make test's JUnit report)
	$(STACK) acceptance --ref $(REF) $(if $(REPORT),--report $(REPORT))

engine-down: venv ## Stop the local engine (and any container still on it), by PID
	$(STACK) engine-down

secrets: check-env venv ## Random values for the stack's own secrets into .env (mode 0600); ROTATE=NAME,...|all replaces set ones
	$(STACK) secrets --env $(ENV) --rotate "$(ROTATE)"

up: check-env packages-up venv ## Install what it needs, start the stack (ENV=dev|stage|prod, RUNTIME=auto|native|compose, TOPOLOGY=single|ha, API_REPLICAS=1..9)
	$(STACK) up --env $(ENV) --runtime $(RUNTIME) $(if $(TOPOLOGY),--topology $(TOPOLOGY))

down: check-env venv ## Stop the stack; its data is kept
	$(STACK) down --env $(ENV) --runtime $(RUNTIME) $(if $(TOPOLOGY),--topology $(TOPOLOGY))

status: check-env venv ## Show each component: state, URL, scrape target health
	$(STACK) status --env $(ENV) --runtime $(RUNTIME) $(if $(TOPOLOGY),--topology $(TOPOLOGY))

logs: check-env venv ## Show the last lines of every component's log
	$(STACK) logs --env $(ENV) --runtime $(RUNTIME) $(if $(TOPOLOGY),--topology $(TOPOLOGY))

backup: check-env venv ## The HA topology's long-term store (VictoriaMetrics) into a new folder (DIR=, default .run/backups/<env>/<time>)
	$(STACK) backup --env $(ENV) --runtime $(RUNTIME) $(if $(TOPOLOGY),--topology $(TOPOLOGY)) $(if $(DIR),--dir $(DIR))

restore: check-env venv ## Replace the long-term store's data with the backup in DIR= (stops and restarts VictoriaMetrics)
	$(STACK) restore --env $(ENV) --runtime $(RUNTIME) $(if $(TOPOLOGY),--topology $(TOPOLOGY)) $(if $(DIR),--dir $(DIR))

clean: check-env venv ## Remove the stopped stack's data, logs and rendered files (ENV=...)
	$(STACK) clean --env $(ENV) --runtime $(RUNTIME) $(if $(TOPOLOGY),--topology $(TOPOLOGY))

distclean: ## Remove .venv, caches and everything under .run/ (stop the stacks first)
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info .run
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
