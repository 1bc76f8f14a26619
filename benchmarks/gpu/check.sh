#!/usr/bin/env bash
# The whole GPU check in one command (docs/gpu-check.md):
#
#   bash benchmarks/gpu/check.sh            on the GPU machine: under 8 minutes on an H200
#   bash benchmarks/gpu/check.sh --quick    on any CPU, CI-sized (tests/benchmarks runs it)
#
# Installs the carried wheels (.gpu-wheels/, made by benchmarks/gpu/wheels.sh) when pydantic is
# missing, makes progan_dsl.codegen importable from a plain checkout, then runs
# benchmarks/gpu/check.py, which runs each step in its own process with its own time limit and
# writes gpu_check.json, gpu_check.txt and check.log to $OUT (out/gpu/ when OUT is unset).
# Extra arguments go to check.py (--steps, --total, --out).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1
if ! "$PY" -c "import pydantic, yaml" 2>/dev/null; then
  if ls .gpu-wheels/c*/*.whl* >/dev/null 2>&1; then
    stage=/tmp/gpu-wheels && rm -rf "$stage" && mkdir -p "$stage"
    cp .gpu-wheels/c*/* "$stage"/
    for part in "$stage"/*.part00; do  # gpu-wheels.sh cuts wheels over 50 MB into parts
      [ -e "$part" ] || continue
      whl="${part%.part00}"; cat "$whl".part* > "$whl" && rm -f "$whl".part*
    done
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$stage"/*.whl || echo "check.sh: wheel install failed" >&2
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "check.sh: pydantic is missing and no .gpu-wheels/ was carried (bash benchmarks/gpu/wheels.sh)" >&2
  fi
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(not u.find_spec('progan_dsl.codegen'))"; then
  # a plain checkout (not pip-installed): the code generator lives in codegen/ at the top level
  [ -e progan_dsl/codegen ] || ln -s ../codegen progan_dsl/codegen
  echo "check.sh: linked progan_dsl/codegen -> ../codegen (checkout not installed)"
fi
exec "$PY" -m benchmarks.gpu.check "$@"
