# MarketFlux: `make run` starts everything, `make test` tests everything.
# Both install what is missing first; a second call with nothing changed installs nothing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LAUNCH := $(PY) -m apps.ops.launcher

.PHONY: run test lint fmt bench backup restore superuser shell deps clean help
.DEFAULT_GOAL := help

help:
	@echo "make run        the whole stack on this machine (Ctrl-C stops it)"
	@echo "make test       the whole test suite"
	@echo "make lint       ruff, import contracts, migrations check, deploy check"
	@echo "make fmt        format the code"
	@echo "make bench      run every benchmark under bench/"
	@echo "make backup     dump the database of the stack make run started"
	@echo "make restore FILE=dump DB=name   restore a dump into a new database"
	@echo "make superuser  create an admin login in the stack that make run started"
	@echo "make shell      a Django shell on that stack"

$(VENV)/.installed: requirements.txt requirements-local.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.installed node_modules/.installed

run: deps
	$(LAUNCH) run

test: deps
	$(LAUNCH) test $(ARGS)

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) manage.py makemigrations --check --dry-run
	DJANGO_ENV=production SECRET_KEY=lint-only-$$(head -c 48 /dev/urandom | base64 | tr -d '/+=') \
		ALLOWED_HOSTS=marketflux.example $(PY) manage.py check --deploy --fail-level WARNING

fmt: deps
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: deps
	$(LAUNCH) bench $(ARGS)

backup: deps
	$(LAUNCH) manage backup $(FILE)

restore: deps
	@test -n "$(FILE)" || { echo "usage: make restore FILE=var/backups/X.dump [DB=name]"; exit 2; }
	$(LAUNCH) manage restore $(FILE) $(if $(DB),--create $(DB))

superuser: deps
	$(LAUNCH) manage createsuperuser

shell: deps
	$(LAUNCH) manage shell

clean:
	rm -rf var/test-* .pytest_cache .ruff_cache
