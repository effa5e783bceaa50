# Aerie developer entry points. A fresh machine needs only Python 3.11: the first target
# makes .venv, installs the shared library (with the embedded Redis and uWSGI) and every
# service editable, and later runs skip that unless a pyproject.toml or requirements changed.
#
#   make run     Redis and every service, as on Cloud Foundry (Ctrl-C stops it all)
#   make test    lint, unit, floors, service, browser and e2e through tox
#   make lint    ruff
#   make bench   the benchmarks
#   make lock    services/*/requirements.lock: the exact wheels, with hashes, that make stage ships
#   make stage   each service as a self-contained cf push folder in build/stage/ (offline vendor/)
#   make deploy ENV=staging   Redis if missing, a rolling cf push of each app, the smoke tests (DRY_RUN=1 prints)
#   make clean   forget the local stack's state (.aerie/: secrets, Redis data, logs)

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Touched after a successful install; anything it depends on being newer means reinstall.
STAMP := $(VENV)/.aerie-installed

SERVICE_PYPROJECTS := $(wildcard services/*/pyproject.toml)
SERVICE_DIRS := $(patsubst %/pyproject.toml,%,$(SERVICE_PYPROJECTS))
INSTALL_INPUTS := Makefile shared/pyproject.toml shared/client/pyproject.toml $(SERVICE_PYPROJECTS) $(wildcard services/*/requirements.txt)
# The tools the targets below call, beside the code; tox builds its own envs for the tests
# (tox-uv makes that a few seconds per env instead of twenty; tox.ini works without it too).
DEV_TOOLS := 'tox>=4.11' 'tox-uv>=1.11' 'ruff>=0.6' 'pytest>=8' 'pytest-timeout>=2.3' 'coverage>=7.4' 'requests>=2.31'

# Extra arguments: make run ARGS="--verbose --base-port 9081"; make test TOX_ARGS="-e unit -- -k oauth"
ARGS ?=
TOX_ARGS ?=

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install run test lint bench lock stage deploy clean distclean

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python $(INSTALL_INPUTS)
	$(BIN)/python -m pip install --quiet -e shared/client -e 'shared[local,cf,tracing]' $(addprefix -e ,$(SERVICE_DIRS)) $(DEV_TOOLS)
	@touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m aerie.local.stack $(ARGS)

test: $(STAMP)
	$(BIN)/tox run $(TOX_ARGS)

lint: $(STAMP)
	$(BIN)/tox run -e lint

bench: $(STAMP)
	@if [ -f bench/run.py ]; then \
		$(BIN)/python bench/run.py $(ARGS); \
	else \
		echo "no benchmarks yet (bench/run.py)"; \
	fi

# Cloud Foundry (README, "Deploying to Cloud Foundry"). ENV names manifests/vars/$(ENV).yml;
# secrets come from manifests/vars/$(ENV).secrets.yml or $$AERIE_SECRETS_VARS_FILE.
# SERVICES limits both to some apps (default: all); ARGS goes to the deploy alone.
ENV ?= staging
DRY_RUN ?=
SERVICES ?=

# Resolves against the package index; commit the locks it writes. A stale one stops make stage
# and fails the unit tests (shared/tests/test_cf_lock.py).
lock: $(STAMP)
	$(BIN)/python -m aerie.cf.lock $(SERVICES)

stage: $(STAMP)
	$(BIN)/python -m aerie.cf.stage $(SERVICES)

deploy: stage
	DRY_RUN=$(DRY_RUN) $(BIN)/python -m aerie.cf.deploy $(ENV) $(SERVICES) $(ARGS)

# Only what the stack and the tools generate; the venv and tox envs stay (see distclean).
# Refuses while a stack runs on this state: its Redis data would vanish under it.
clean:
	@if [ -f .aerie/stack.pid ] && kill -0 "$$(cat .aerie/stack.pid)" 2>/dev/null; then \
		echo "a stack (pid $$(cat .aerie/stack.pid)) is running on .aerie/: stop it first" >&2; exit 1; \
	fi
	rm -rf .aerie .pytest_cache .coverage .coverage.* htmlcov coverage.xml

distclean: clean
	rm -rf $(VENV) .tox
