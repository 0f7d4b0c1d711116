# cd4ml-kkbox: every workflow of the project is a target here. `make` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
SCALE ?= small
SOURCE ?= synthetic
CHUNKS ?= 3
ARGS ?=

export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_YES := 1
export PIPENV_NOSPIN := 1
export PIPENV_VERBOSITY := -1
export DVC_NO_ANALYTICS := 1
# dvc.yaml runs `python src/<stage>.py`: the project's environment must come first on PATH.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

VENV := .venv
PY := $(VENV)/bin/python
DVC := $(VENV)/bin/dvc
STAMP := $(VENV)/.installed

##@ Setup
.PHONY: help install system-deps
help: ## List every target (this message)
	@awk 'BEGIN {FS = ":.*## "} \
	  /^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)} \
	  /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: SCALE=$(SCALE) (tiny|small|medium|full)  SOURCE=$(SOURCE) (synthetic|kaggle)"

install: $(STAMP) ## Install pipenv if missing and the locked environment into .venv/
$(STAMP): Pipfile Pipfile.lock
	@$(PYTHON) -m pipenv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet pipenv
	$(PYTHON) -m pipenv install --deploy --dev
	@$(DVC) config core.analytics false
	@touch $@

system-deps: ## Install the Debian packages and npm tools the test servers need
	@scripts/system-deps.sh

##@ Data
.PHONY: data
data: $(STAMP) ## Make data/ (SCALE=tiny|small|medium|full, SOURCE=synthetic|kaggle) and track it with DVC
	$(PY) src/generate.py --source $(SOURCE) --scale $(SCALE) --params params.yaml --out data
	$(DVC) add data --quiet

data/train.csv:
	@$(MAKE) --no-print-directory data

##@ Pipeline
.PHONY: run repro metrics plots
run: $(STAMP) data/train.csv repro metrics ## Set up, make the sample data, run the pipeline, show the metrics

repro: $(STAMP) ## Run the DVC pipeline (only the stages whose inputs changed)
	$(DVC) repro $(ARGS)

metrics: $(STAMP) ## Show the metrics of the workspace
	@$(DVC) metrics show

plots: $(STAMP) ## Render the DVC plots to plots/report/index.html (PNG images are in plots/)
	$(DVC) plots show --out plots/report

##@ Quality
.PHONY: lint format test unit
lint: $(STAMP) ## Check style with ruff
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

format: $(STAMP) ## Format the code with ruff
	$(VENV)/bin/ruff check --fix src tests
	$(VENV)/bin/ruff format src tests

test: $(STAMP) system-deps ## Install what is missing and run the whole test suite
	$(VENV)/bin/pytest $(ARGS)

unit: $(STAMP) ## Run the fast tests only (no pipeline run, no servers)
	$(VENV)/bin/pytest -m "not slow and not s3 and not ci" $(ARGS)

##@ Housekeeping
.PHONY: clean
clean: ## Remove pipeline outputs (data/ and the DVC cache stay)
	rm -rf clean_data models metrics plots predictions
