# GoodBooks Recommender — every target runs inside .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
GB     := $(BIN)/goodbooks
# Real titles and authors for the generated data when the shared goodbooks copy is beside us.
BOOKS_CSV ?= $(wildcard ../shared/data/goodbooks-10k/books.csv)
TAGS_CSV  ?= $(wildcard ../shared/data/goodbooks-10k/tags.csv)
export GOODBOOKS_BOOKS_CSV ?= $(BOOKS_CSV)
export GOODBOOKS_TAGS_CSV ?= $(TAGS_CSV)

.PHONY: help install install-dev demo test lint prefect-ui mlflow-ui serve clean

help:            ## list targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[pipeline]'
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(VENV)/.installed           ## create .venv and install the project

install-dev: $(VENV)/.installed-dev   ## also install test dependencies

demo: install                  ## run the whole pipeline end to end and show a reader's recommendations
	$(GB) demo $(DEMO_ARGS)

test: install-dev              ## run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev              ## ruff
	$(BIN)/ruff check .

prefect-ui: install            ## Prefect UI on the project's run history (http://127.0.0.1:4200)
	PREFECT_HOME=$$($(BIN)/python -c 'from settings import get_settings as g; print(g().prefect_home)') \
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/prefect server start --host 127.0.0.1 --port 4200

mlflow-ui: install             ## MLflow UI on the project's tracking store (http://127.0.0.1:5000)
	$(BIN)/mlflow ui --host 127.0.0.1 --port 5000 \
	  --backend-store-uri $$($(BIN)/python -c 'from settings import get_settings as g; print(g().tracking_uri)')

serve: install                 ## the HTTP API on Redis (http://127.0.0.1:8000/docs)
	$(GB) serve

clean:                         ## remove generated data and tool state (keeps .venv)
	rm -rf .goodbooks data/generated data/processed data/redis

# --- operations: the local stack (infra/stack/; pid files and logs under .goodbooks/stack) --
STACK := $(BIN)/python -m infra.stack

.PHONY: up down status deploy undeploy e2e

up: install                    ## start Prefect server + worker, MLflow server and the API; deploy the flows
	$(STACK) up

down:                          ## stop exactly what `make up` started
	$(STACK) down

status:                        ## what runs where: pid, URL, health
	$(STACK) status

deploy: install                ## create or update the deployments of prefect.yaml on the running server
	$(STACK) deploy

undeploy:                      ## delete the deployments and their trigger automations
	$(STACK) undeploy

e2e: install-dev               ## end-to-end tests: real Prefect server, worker, deployments, Redis
	$(BIN)/python -m pytest -m e2e tests/e2e $(PYTEST_ARGS)
