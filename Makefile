# The two commands of the quick start: `make run` and `make test`. Both build .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.polyhost-installed
# The SageMaker Python SDK, a client the suite drives polyhost with, lives in its own venv: its
# pins (protobuf, packaging) must not touch the frameworks the stacks run on.
SDK_VENV  := .venv-sdk
SDK_STAMP := $(SDK_VENV)/.installed
PORT   ?= 7080
# Extra options of the demo, e.g. `make run RUN_ARGS="--no-s3 --retrain"` (see run_demo.py --help).
RUN_ARGS ?=

.PHONY: run test test-fast lint typecheck bench soak venv clean tools ui build-deps

venv: $(STAMP)

# torch is pinned to the CPU build first: an unpinned torch would pull a multi-GB CUDA wheel.
# setup.py builds the compiled SigV4 path (src/polyhost/auth/_sigv4_fast.c) with what
# build-deps installs; without a compiler pip skips it and polyhost verifies in Python.
$(STAMP): pyproject.toml setup.py src/polyhost/auth/_sigv4_fast.c | build-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,sklearn,pytorch,tensorflow,xgboost,huggingface,docker,ray]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

$(SDK_STAMP):
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install -q 'sagemaker>=2.200,<3'
	touch $(SDK_STAMP)

# The dashboard at /ui on the admin listener: the page (ui/src) and its chart library (uPlot,
# pinned in ui/package-lock.json) copied into the package; npm is needed for the first install.
ui:
	scripts/build-ui.sh

# A C compiler, OpenSSL's and Python's headers: they build polyhost's compiled SigV4 path and
# the small preload that keeps the Ray test cluster's listeners on loopback (Debian packages,
# installed as root only; otherwise pip skips the extension and those tests say what to install).
build-deps:
	@if ! command -v cc >/dev/null || [ ! -f /usr/include/openssl/sha.h ] || \
	    ! $(PYTHON) -c "import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q gcc libc6-dev libssl-dev python3-dev >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q gcc libc6-dev libssl-dev python3-dev >/dev/null; } || \
	      echo "could not install gcc, libssl-dev and python3-dev: polyhost will verify signatures in Python only"; \
	  fi; \
	fi

# Debian's load generators, used by the benchmarks and their smoke test; Debian's chromium,
# which the dashboard's browser test drives (root only; otherwise those tests say what to
# install).
tools: build-deps
	@if ! command -v hey >/dev/null || ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q hey wrk >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q hey wrk >/dev/null; } || \
	      echo "could not install hey/wrk: the benchmark smoke test will be skipped"; \
	  fi; \
	fi
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q chromium >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null; } || \
	      echo "could not install chromium: the dashboard's browser test will be skipped"; \
	  fi; \
	fi

# scripts/docker-up.sh installs and starts Docker (no bridge) and builds the test images once;
# where no daemon can be had it says why, and the Docker tests are skipped with that reason.
# Two parts: everything but Ray on two pytest-xdist workers (most of the suite waits on servers
# and timers), then the Ray tests alone on a quiet machine (a local cluster starved of CPU by
# the other worker misses its own health checks); the run fails if either part does.
# `--dist loadfile` keeps a module's tests on one worker, in order, so its module-scoped server
# starts once (`loadgroup`'s groups are lost with pytest 9's node ids: its tests would scatter).
test: lint typecheck $(SDK_STAMP) tools ui
	PYTHON=$(BIN)/python scripts/docker-up.sh
	@status=0; \
	POLYHOST_SDK_PYTHON=$(CURDIR)/$(SDK_VENV)/bin/python $(BIN)/pytest -q -n 2 --dist loadfile -m "not ray" || status=$$?; \
	POLYHOST_SDK_PYTHON=$(CURDIR)/$(SDK_VENV)/bin/python $(BIN)/pytest -q -m ray || status=$$?; \
	exit $$status

# The in-process core only, in under a minute: no server or stack started as a program, no
# Docker, Ray, browser or SDK, nothing slow (the markers are put on by tests/conftest.py;
# `make test` still runs every test).
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not process and not docker and not ray and not browser and not sdk and not slow"

run: $(STAMP) ui
	$(BIN)/python examples/mnist-multi-container/run_demo.py --port $(PORT) $(RUN_ARGS)

bench: $(STAMP) tools
	$(BIN)/python -m bench

# Ten minutes of load over a 15-container endpoint with faults beside it (not part of `test`).
soak: $(STAMP) tools
	$(BIN)/python -m bench.soak --minutes 10

clean:
	rm -rf $(VENV) $(SDK_VENV) .mypy_cache .ruff_cache .pytest_cache
