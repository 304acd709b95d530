# Fluxomail: `make run` serves a demo on http://127.0.0.1:8000, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# make run's local webhook receiver on 127.0.0.1 (0: a free port).
WEBHOOK_PORT ?= 0

.PHONY: run test lint format bench migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip >/dev/null 2>&1 || $(BIN)/pip install --upgrade pip

# pip's and setuptools' chatter goes to a log; it is printed only when the install fails.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@echo "installing dependencies into $(VENV) (log: $(VENV)/pip.log)"
	@$(BIN)/pip install --quiet -e . >$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "installing dependencies and test tools into $(VENV) (log: $(VENV)/pip.log)"
	@$(BIN)/pip install --quiet -e ".[dev]" >$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $@ $(VENV)/.installed-run

migrate: $(VENV)/.installed-run
	$(BIN)/python manage.py migrate --noinput

# Links in the demo's mails (tracking) and the printed examples follow HOST and PORT. Migrations
# run quietly (`make migrate` lists them). The launcher (fluxomail/devserver.py) starts a webhook
# receiver on 127.0.0.1, runs bootstrap_demo (whose webhook endpoint points at the receiver:
# private targets are allowed here, as they are by default outside production), then the web
# server, a Celery worker and beat; Ctrl-C stops them all.
run: export SITE_URL ?= http://$(HOST):$(PORT)
run: export WEBHOOK_ALLOW_PRIVATE_TARGETS ?= true
run: $(VENV)/.installed-run
	$(BIN)/python manage.py migrate --noinput --verbosity 0
	$(BIN)/python -m fluxomail.devserver $(HOST):$(PORT) --webhook-port $(WEBHOOK_PORT)

test: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var db.sqlite3 .demo-credentials.json staticfiles .pytest_cache .ruff_cache
