# Quotaboard: `make demo` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint bench bench-pages clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Quotaboard needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

## make demo: install, migrate the embedded SQLite database, seed "Acme AI" once, then run the web server,
## a Celery worker, beat and the provider simulator together. Ctrl-C stops everything.
demo: $(STAMP)
	$(BIN)/python manage.py demo

## make test: the whole suite (SQLite by default; DATABASE_URL=postgres://... for PostgreSQL).
test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## make bench: performance figures against baselines measured in the same run (needs PostgreSQL).
bench: $(STAMP)
	$(BIN)/python -m bench.run

## make bench-pages: p50/p95 server time of every analytics page on the seeded demo data (SQLite; seed it with `manage.py seed_demo` first).
bench-pages: $(STAMP)
	$(BIN)/python bench/analytics_pages.py

clean:
	rm -rf var/broker var/staticfiles
