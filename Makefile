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

.PHONY: run test lint typecheck bench venv clean

venv: $(STAMP)

# torch is pinned to the CPU build first: an unpinned torch would pull a multi-GB CUDA wheel.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,sklearn,pytorch,tensorflow]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

$(SDK_STAMP):
	$(PYTHON) -m venv $(SDK_VENV)
	$(SDK_VENV)/bin/pip install -q 'sagemaker>=2.200,<3'
	touch $(SDK_STAMP)

test: lint typecheck $(SDK_STAMP)
	POLYHOST_SDK_PYTHON=$(CURDIR)/$(SDK_VENV)/bin/python $(BIN)/pytest -q

run: $(STAMP)
	$(BIN)/python examples/mnist-multi-container/run_demo.py --port $(PORT) $(RUN_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(SDK_VENV) .mypy_cache .ruff_cache .pytest_cache
