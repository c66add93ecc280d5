# Two commands from a fresh clone (only Python 3.11 needed):
#   make demo   set up .venv, run the whole pipeline on embedded defaults, print a search
#   make test   set up .venv, run the test suite (and the Airflow bridge suite in its own venv)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-main test-airflow lint search serve setup-prefect deploy check-compose test-containers settings-doc db-status db-stop clean

install: $(STAMP)

# torch first, pinned: 2.13.0 is a CPU wheel; any looser requirement pulls a multi-GB CUDA build.
$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: install
	$(BIN)/python flows/main.py

test: test-main test-airflow

test-main: install
	$(BIN)/ruff check flows tasks tests api bench
	$(BIN)/pytest -q

test-airflow: install
	bash airflow_bridge/run_tests.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check flows tasks tests
	$(BIN)/mypy

search: install
	$(BIN)/semantic-index search "$(Q)"

serve: install
	$(BIN)/semantic-index serve

# Against a running Prefect server (PREFECT_API_URL): work pool, concurrency limits, alerts.
setup-prefect: install
	$(BIN)/semantic-index setup

deploy: install
	$(BIN)/prefect deploy --all

check-compose:
	bash deployments/check_compose.sh

# The embedded PostgreSQL server of DATA_DIR (see tasks/embedded_server.py).
db-status: install
	$(BIN)/semantic-index db status

db-stop: install
	$(BIN)/semantic-index db stop

# Build the images and run the compose stack end to end (needs root, or a running Docker engine
# and the base image): engine, base image, images, pipeline + search + backup + docker work pool,
# then everything torn down. See docs/operations.md § Containers.
test-containers:
	bash deployments/smoke_test.sh

settings-doc: install
	$(BIN)/semantic-index settings --write-readme

clean:
	rm -rf $(VENV) .venv-airflow .data
