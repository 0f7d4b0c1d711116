# cd4ml-kkbox: every workflow of the project is a target here. `make` lists them: the loop first,
# in the order of the README, then the tools.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
# The interpreter that bootstraps pipenv: the base Python behind $(PYTHON), never a virtual
# environment's (a .venv first on PATH, this project's or another's, would get pipenv installed
# into it and its editable install re-pointed).
SYSTEM_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys._base_executable)' 2>/dev/null)
SCALE ?= small
SOURCE ?= synthetic
CHUNKS ?= 3
ARGS ?=

export PIPENV_VENV_IN_PROJECT := 1
export PIPENV_YES := 1
export PIPENV_NOSPIN := 1
export PIPENV_VERBOSITY := -1
export DVC_NO_ANALYTICS := 1
# XGBoost's OpenMP threads sleep while they wait instead of spinning: on a 2-core machine that
# other jobs share, spinning made the sanity stage's small fits 3-6x slower (make bench).
export OMP_WAIT_POLICY ?= PASSIVE
# dvc.yaml runs `python src/<stage>.py`: the project's environment must come first on PATH.
export PATH := $(CURDIR)/.venv/bin:$(PATH)

VENV := .venv
PY := $(VENV)/bin/python
DVC := $(VENV)/bin/dvc
STAMP := $(VENV)/.installed

##@ Set up
.PHONY: help install system-deps
help: ## List every target (this message)
	@awk 'BEGIN {FS = ":.*## "} \
	  /^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)} \
	  /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables: SCALE=$(SCALE) (tiny|small|medium|full)  SOURCE=$(SOURCE) (synthetic|download)"
	@echo "           S3_BUCKET, S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (remote)  ARGS=... (extra arguments)"
	@echo "           ENGINE=local|dask, DASK_SCHEDULER_ADDRESS, DASK_WORKERS, DASK_SCRATCH (the dask engine)"

install: $(STAMP) ## Install pipenv if missing and the locked environment into .venv/
$(STAMP): Pipfile Pipfile.lock
	@test -n "$(SYSTEM_PYTHON)" || { echo "error: $(PYTHON) not found: install Python 3.11" >&2; exit 1; }
	@$(SYSTEM_PYTHON) -m pipenv --version >/dev/null 2>&1 || $(SYSTEM_PYTHON) -m pip install --quiet pipenv
	$(SYSTEM_PYTHON) -m pipenv install --deploy --dev
	@$(DVC) config core.analytics false
	@touch $@

system-deps: ## Install the Debian packages and npm tools the test servers need
	@scripts/system-deps.sh

##@ Data
.PHONY: data reference
data: $(STAMP) ## Make data/ (SCALE=tiny|small|medium|full, SOURCE=synthetic|download) and track it with DVC
	$(PY) -m cd4ml.generate --source $(SOURCE) --scale $(SCALE) --params params.yaml --out data
	$(DVC) add data --quiet

REFERENCE_DATA ?= data
reference: $(STAMP) ## Refresh reference/profile.json, the drift baseline, from REFERENCE_DATA (default data/)
	$(PY) src/validate.py --data $(REFERENCE_DATA) --reference reference/profile.json --update-reference
	@echo "Review and commit reference/profile.json; the committed one is from SCALE=small synthetic data." >&2

##@ Pipeline
.PHONY: run repro metrics plots params
# ENGINE=local|dask runs preprocess and train there (forced: DVC reruns nothing for an engine);
# without it a scheduler address in DASK_SCHEDULER_ADDRESS means dask for the stages that run.
ENGINE ?=
run: $(STAMP) ## Set up, make the sample data, run the pipeline, show the metrics
	@test -d data || $(MAKE) --no-print-directory data
	@$(MAKE) --no-print-directory repro metrics

repro: $(STAMP) ## Run the DVC pipeline (changed stages only; a failure puts the last good outputs back); ENGINE=local|dask
	DVC=$(DVC) ENGINE=$(ENGINE) scripts/repro.sh $(ARGS)

metrics: $(STAMP) ## Show the metrics of the workspace
	@$(DVC) metrics show eval/metrics.json

plots: $(STAMP) ## Render the DVC plots to plots/report/index.html (PNG images are in eval/plots/images)
	$(DVC) plots show --out plots/report

params: $(STAMP) ## Check every key of params.yaml (docs/reference/params.md lists them)
	@$(PY) -m cd4ml.params

##@ Evaluate and gate
.PHONY: sanity champion gate compare metrics-diff report plots-diff mr-note
BASE_REV ?= HEAD
CHAMPION := models/champion

sanity: $(STAMP) ## Run the pipeline up to the model sanity checks (metrics/sanity.json)
	DVC=$(DVC) scripts/repro.sh sanity

champion: $(STAMP) ## Fetch the registry's prod bundle into models/champion (dvc artifacts get)
	$(PY) -m cd4ml.registry fetch --stage prod --out $(CHAMPION)

gate: $(STAMP) champion ## After `make repro`: the bundle must beat the prod one on the same rows (metrics/gate.json)
	@$(PY) -m cd4ml.gate diff
	$(PY) -m cd4ml.gate check --champion $(CHAMPION)

compare: $(STAMP) ## Write metrics/gate.json: challenger vs champion, never failing on the verdict
	$(PY) -m cd4ml.gate compare --champion $(CHAMPION)

metrics-diff: $(STAMP) compare ## Write reports/metrics_diff.md: dvc metrics diff --md against BASE_REV=HEAD, and the gate
	$(PY) -m cd4ml.gate diff --rev $(BASE_REV) --md reports/metrics_diff.md --gate metrics/gate.json

report: $(STAMP) compare ## Write reports/index.html: the offline evaluation page (gate, curves, data, history, provenance)
	$(PY) -m cd4ml.report --out reports/index.html --champion $(CHAMPION)

NODE_MODULES ?= .tools/node_modules
plots-diff: $(STAMP) ## Write reports/plots/index.html: dvc plots diff against BASE_REV=HEAD, rendering offline (vega inlined)
	$(PY) -m tools.browser vega-template .cache/vega-template.html --node-modules $(NODE_MODULES)
	$(DVC) plots diff $(BASE_REV) --html-template .cache/vega-template.html -o reports/plots

mr-note: $(STAMP) ## On a merge-request pipeline: post or update the one MR note (metrics diff, verdict, report link)
	$(PY) -m cd4ml.mrnote --body reports/mr_note.md

##@ Release
.PHONY: promote signing-key sign registry release
promote: $(STAMP) ## Pass the gate, then write the new roc_auc into baseline.txt (commit it)
	$(PY) -m cd4ml.gate promote --champion $(CHAMPION)

signing-key: $(STAMP) ## Make the release key pair: keys/release.pem (secret: the CI variable CD4ML_SIGNING_KEY) and keys/release.pub (commit it)
	$(PY) -m cd4ml.signing keygen

# The signature is a file of the bundle: dvc.lock records the signed bundle, and predict's
# record of it (predict reads the bundle; its output is the same).
sign: $(STAMP) ## Sign models/bundle with CD4ML_SIGNING_KEY (or KEY=file) into its model.sig, recorded in dvc.lock
	$(PY) -m cd4ml.signing sign models/bundle $(if $(KEY),--private-key $(KEY),)
	$(DVC) commit --force --quiet bundle predict

registry: $(STAMP) ## List the registered versions of the bundle, their stages and roc_auc (GTO tags)
	@$(PY) -m cd4ml.registry list

release: $(STAMP) ## Register HEAD (its bundle signed: make sign) as the next version and assign it to prod (GTO tags; CI pushes them)
	$(PY) -m cd4ml.registry release $(if $(RELEASE_MESSAGE),-m "$(RELEASE_MESSAGE)",)

##@ Serve and monitor
.PHONY: serve monitor
BUNDLE ?= models/bundle
HOST ?= 127.0.0.1
PORT ?= 8000
PREDICTION_LOG ?= logs/predictions

# Locally, without CD4ML_LOG_KEY, the log keeps raw ids (--keep-raw-ids); with it, keyed hashes.
serve: $(STAMP) ## Serve BUNDLE=models/bundle (a local build: unsigned allowed) over HTTP on HOST=127.0.0.1 PORT=8000, logging to PREDICTION_LOG (OpenAPI page: /docs)
	$(PY) -m cd4ml.serve --bundle $(BUNDLE) --host $(HOST) --port $(PORT) --prediction-log "$(PREDICTION_LOG)" $(if $(CD4ML_LOG_KEY),,--keep-raw-ids) --allow-unsigned $(ARGS)

monitor: $(STAMP) ## Delete PREDICTION_LOG's files older than serve.log_retention_days, judge it against BUNDLE's training profile and age (LABELS=file: live AUC); metrics/monitor.json, plots/monitor/, retrain.json when the retrain trigger fires
	$(PY) -m cd4ml.monitor --log "$(PREDICTION_LOG)" --bundle $(BUNDLE) $(if $(LABELS),--labels $(LABELS),) $(ARGS)

##@ Deliver (nginx in front of two versions)
.PHONY: fetch rollout rollback rollout-status rollout-stop image
SERVED ?= served/bundle
DEPLOY_HOME ?= deploy
VERSION ?=

fetch: $(STAMP) ## Fetch VERSION (default: the prod one) from the registry into SERVED=served/bundle, verified
	$(PY) -m cd4ml.registry fetch $(if $(VERSION),--version $(VERSION),--stage prod) --out $(SERVED)

rollout: $(STAMP) ## Roll SERVED out behind nginx: shadow, canary steps, then promote or roll back (LABELS=file: live AUC)
	$(PY) -m cd4ml.rollout --home $(DEPLOY_HOME) run --bundle $(SERVED) $(if $(LABELS),--labels $(LABELS),) $(ARGS)

rollback: $(STAMP) ## Serve the previous prod version again: registry, bundle verified, traffic switched
	$(PY) -m cd4ml.rollout --home $(DEPLOY_HOME) rollback $(ARGS)

rollout-status: $(STAMP) ## The versions served from DEPLOY_HOME=deploy, their ports and nginx
	@$(PY) -m cd4ml.rollout --home $(DEPLOY_HOME) status

rollout-stop: $(STAMP) ## Stop nginx and the services of DEPLOY_HOME
	$(PY) -m cd4ml.rollout --home $(DEPLOY_HOME) stop

IMAGE ?= localhost/cd4ml-serve:dev
image: $(STAMP) system-deps ## Build the service's image of SERVED (and its bundle.json) as IMAGE with buildah (ci/serve.Dockerfile)
	tools/image.sh build $(SERVED) $(IMAGE)

##@ New data
.PHONY: split-data ingest history
INCOMING ?= incoming
split-data: $(STAMP) ## Cut the examples table (data/train.csv) into CHUNKS=3 chunks in INCOMING (folder or s3://), restart data/ with the first
	$(PY) -m cd4ml.chunks --chunks $(CHUNKS) --out $(INCOMING) --commit $(if $(PUSH),--push,)

ingest: $(STAMP) ## Append the next chunk from INCOMING to data/ as a new DVC version; dvc push (PUSH=1) and commit
	$(PY) -m cd4ml.ingest --incoming $(INCOMING) --commit $(if $(PUSH),--push --git-push,)

history: $(STAMP) ## Plot ROC AUC and rows per data version from git history (plots/history/)
	$(PY) -m cd4ml.history --out plots/history

##@ Remote (S3)
.PHONY: push pull remote-check
push: $(STAMP) ## Push data, pipeline outputs and run cache to the remote (S3_BUCKET, S3_ENDPOINT)
	$(PY) -m cd4ml.remote push $(ARGS)

pull: $(STAMP) ## Pull data, pipeline outputs and run cache from the DVC remote
	$(PY) -m cd4ml.remote pull $(ARGS)

remote-check: $(STAMP) ## Check that the remote answers, accepts the credentials, has the bucket
	$(PY) -m cd4ml.remote check

##@ Quality
.PHONY: test unit lint format
test: $(STAMP) system-deps ## Install what is missing and run the whole test suite
	$(VENV)/bin/pytest $(ARGS)

unit: $(STAMP) ## Run the fast tests only: tests/unit and tests/data (no pipeline run, no servers, no browser)
	$(VENV)/bin/pytest -m "not slow and not s3 and not ci and not browser and not image" $(ARGS)

lint: $(STAMP) ## Check style with ruff
	$(VENV)/bin/ruff check src tests tools
	$(VENV)/bin/ruff format --check src tests tools

format: $(STAMP) ## Format the code with ruff
	$(VENV)/bin/ruff check --fix src tests tools
	$(VENV)/bin/ruff format src tests tools

##@ CI
.PHONY: ci-lint ci-local
CI_SCALE ?= tiny

ci-lint: $(STAMP) system-deps ## Check .gitlab-ci.yml offline (GitLab's schema) and list the jobs of a branch pipeline
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.gitlab-ci --data-transform gitlab-ci .gitlab-ci.yml
	@scripts/ci-local.sh --list

ci-local: $(STAMP) system-deps ## Run the CI jobs here with gitlab-ci-local and a loopback S3 (CI_SCALE=tiny, ARGS=jobs)
	SCALE=$(CI_SCALE) scripts/ci-local.sh $(ARGS)

##@ Tools (tools/: measurements and demos, not part of what is deployed)
.PHONY: bench bench-serve oracle-gap staleness ablation demo-evolution s3-start s3-stop clean
# Full (Kaggle) scale unless SCALE is given: `make bench SCALE=medium` is the quicker run.
ifneq ($(filter command line environment,$(origin SCALE)),)
BENCH_SCALE ?= $(SCALE)
else
BENCH_SCALE ?= full
endif
REPEAT ?= 3
BENCH_WORK ?= bench/runs

bench: $(STAMP) ## Time every stage, its I/O floor, dvc repro, push / pull and one more chunk's rerun (BENCH_SCALE=full, REPEAT=3; ENGINE=dask: local vs Dask)
	$(PY) -m tools.bench --scale $(BENCH_SCALE) --repeat $(REPEAT) --work $(BENCH_WORK) $(if $(filter dask,$(ENGINE)),--engine dask,) $(ARGS)

bench-serve: $(STAMP) ## Load-test the service on the BENCH_SCALE=full bundle (20 s a case); writes bench/serve.md
	$(PY) -m tools.benchserve --scale $(BENCH_SCALE) --work $(BENCH_WORK) --out bench $(ARGS)

oracle-gap: $(STAMP) ## Why the model misses the oracle: retrained with the generator's hidden parts (synthetic data; after make run); writes bench/oracle-gap-<scale>.md
	$(PY) -m tools.oraclegap --data data --features clean_data/features --out bench

STALENESS_OUT ?= reports/staleness
ABLATION_OUT ?= reports/ablation

staleness: $(STAMP) ## ROC AUC against model age: trained on data/ up to a cut, scored on the later windows; writes reports/staleness/
	$(PY) -m tools.staleness --data data --params params.yaml --out $(STALENESS_OUT) $(ARGS)

ablation: $(STAMP) ## What each feature group earns: retrained without it, eval ROC AUC change (bootstrap interval), time, bytes; writes reports/ablation/
	$(PY) -m tools.ablation --data data --params params.yaml --out $(ABLATION_OUT) $(ARGS)

demo-evolution: $(STAMP) ## The whole data-evolution story in a temp clone (CHUNKS=3, SCALE=small)
	CHUNKS=$(CHUNKS) SCALE=$(SCALE) scripts/demo-evolution.sh

s3-start: $(STAMP) ## Start the loopback S3 server (Ceph radosgw on 127.0.0.1:S3_PORT, 7480)
	@tools/s3-server.sh start
	@echo 'Use it with: eval "$$(tools/s3-server.sh env)"; make push' >&2

s3-stop: ## Stop the loopback S3 server and delete its data
	@tools/s3-server.sh stop

clean: ## Remove pipeline outputs (data/ and the DVC cache stay)
	rm -rf clean_data models/model models/bundle eval metrics/gate.json predictions
