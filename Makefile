# Two commands from a fresh clone (only Python 3.11 needed):
#   make demo   set up .venv, run the whole pipeline on embedded defaults, print a search
#   make test   set up .venv, run the test suite (and the Airflow bridge suite in its own venv)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Every folder with Python code: ruff checks and format-checks them all.
PY_DIRS := flows tasks tests api bench airflow_bridge data

.PHONY: install lock demo test test-main test-airflow lint search serve setup-prefect deploy check-compose test-containers settings-doc db-status db-stop clean

install: $(STAMP)

# Exactly the packages of the two locks, each checked against its hash (--require-hashes: a file
# that differs fails the install). --no-deps because the locks are complete already (pip's
# resolver rejects hashed locks whose packages require extras, pypa/pip#9644); `pip check` then
# proves no dependency is missing or at a wrong version. torch is in the runtime lock as its CPU
# build (torch==2.13.0+cpu, with that wheel's hash), so nothing can pull the multi-GB CUDA build.
# Then the project itself, editable and without dependencies.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r requirements.lock -r requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/pip check
	touch $(STAMP)

# The locks, made by uv (pinned below) from pyproject.toml's ranges; each file's header repeats
# the command. requirements.lock: the runtime (what the images install). requirements-dev.lock:
# what the dev extra adds to it (tests, checks, type stubs), nothing of the runtime lock again.
# Both are for CPython 3.11 on x86-64 Linux with glibc >= 2.28 (this machine, CI, the images);
# markers are kept (Debian bookworm's 3.11.2 needs async-timeout, 3.11.3+ does not).
# uv keeps every version already in a lock; to move one: make lock LOCK_UPGRADE="--upgrade-package NAME"
# (or LOCK_UPGRADE=--upgrade for all), then `make install` and the tests.
UV_VERSION   := 0.13.8
LOCK_VENV    ?= .venv-lock
# torch's CPU build is not on PyPI: the folder (or index) that has its wheel, here a local folder.
TORCH_WHEELS ?= /opt/wheels
LOCK_UPGRADE ?=
LOCK_FLAGS    = --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-strip-markers \
	--generate-hashes --find-links $(TORCH_WHEELS) $(LOCK_UPGRADE)
LOCK_RUNTIME  = uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
LOCK_DEV      = uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) \
	--excludes requirements.lock -o requirements-dev.lock

lock: $(LOCK_VENV)/.uv-$(UV_VERSION)
	$(LOCK_VENV)/bin/$(strip $(LOCK_RUNTIME)) --quiet \
		--custom-compile-command "make lock: $(strip $(LOCK_RUNTIME))"
	$(LOCK_VENV)/bin/$(strip $(LOCK_DEV)) --quiet \
		--custom-compile-command "make lock: $(strip $(LOCK_DEV))"

$(LOCK_VENV)/.uv-$(UV_VERSION):
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	touch $@

demo: install
	$(BIN)/python flows/main.py

test: test-main test-airflow

# Lint, format and type checks first: a slip fails in a minute, before the long suite. mypy
# reads its folders and strictness from pyproject.toml ([tool.mypy]).
test-main: install
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/mypy
	$(BIN)/pytest -q

test-airflow: install
	bash airflow_bridge/run_tests.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check $(PY_DIRS)
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
