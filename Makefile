# The two commands: `make demo` (zero set-up) and `make test` (installs and runs everything).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/ccgsc
TEST_REDIS_URL ?= redis://127.0.0.1:6379
export DB_CONN_MAX_AGE := 0

.PHONY: demo test test-quick services system-deps lint bench install install-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/python manage.py migrate -v 0
	$(BIN)/python manage.py demo

services:
	scripts/services.sh

system-deps:
	scripts/system-deps.sh

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run -v 1

# Unit, service and consumer tests use Postgres; system tests also start Daphne, Celery and
# Redis-backed layers as separate processes.
test: $(VENV)/.installed-dev system-deps services lint
	DATABASE_URL=$(TEST_DATABASE_URL) CCGSC_TEST_REDIS_URL=$(TEST_REDIS_URL) \
		$(BIN)/python -m pytest -q

# The quick local loop: everything but the slow system tests.
test-quick: $(VENV)/.installed-dev system-deps services
	DATABASE_URL=$(TEST_DATABASE_URL) CCGSC_TEST_REDIS_URL=$(TEST_REDIS_URL) \
		$(BIN)/python -m pytest -q -m "not system"

bench: $(VENV)/.installed-dev services
	$(BIN)/python bench/aggregate.py
	$(BIN)/python bench/round.py
